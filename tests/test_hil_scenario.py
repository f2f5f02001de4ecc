"""HIL scenarios: shipped ones validate, bad ones fail with errors naming the field;
the pure parts of the rig (update grouping, gaps, counters, crash-hook arming,
verdicts) and the TCP relay that stands in for a network without namespaces."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from contract.mutes import AlertMute, message_shape
from hil.__main__ import main as hil_main
from hil.analysis import DeviceFacts, counter_total, judge, lost_lines, max_gap, updates
from hil.faults import crash_state_to_arm
from hil.links import ProxyLink
from hil.observe import DeviceRecord
from hil.scenario import ScenarioError, load_scenario, parse_scenario, shipped_scenarios
from hil.steps import BrokerDown, ExpectAlertsMuted, ExpectLiveModel, ExpectOtaFinal

SHIPPED = {"delta_update_under_load", "power_cut_during_update", "bad_update_rolls_back",
           "broker_outage", "network_loss_single_device", "bad_updates_refused"}


def base(**extra: Any) -> dict[str, Any]:
    return {"name": "t", "devices": [{"id": "a"}, {"id": "b"}],
            "steps": [{"action": "sleep", "seconds": 1}], **extra}


def problems(data: dict[str, Any], **overrides: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "test.toml", overrides or None)
    assert "test.toml" in str(info.value) or "command line" in str(info.value)
    return info.value.problems


def test_shipped_scenarios_validate_and_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    paths = shipped_scenarios()
    assert {p.stem for p in paths} >= SHIPPED
    for path in paths:
        sc = load_scenario(path)
        assert sc.name == path.stem and sc.description
        assert any(s.action == "expect" for s in sc.steps)
    outage = load_scenario(paths[[p.stem for p in paths].index("broker_outage")])
    assert outage.params["outage_s"] == 60
    assert hil_main(["list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "outage_s=60" in out


def test_params_substitute_and_can_be_overridden(tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "hil" / "scenarios" / "broker_outage.toml"
    sc = load_scenario(path, {"outage_s": "4"})
    fault = next(s for s in sc.steps if isinstance(s, BrokerDown))
    assert fault.duration_s == 4.0 and sc.params["outage_s"] == 4


def test_unknown_keys_and_tags_name_the_step() -> None:
    data = base(steps=[
        {"action": "sleep", "seconds": 1, "second": 2},
        {"action": "fault", "fault": "power_cut", "device": "a", "off_s": -1},
        {"action": "fault", "fault": "meteor"},
        {"action": "wait_for", "condition": "ota_done", "timeout_s": 0},
        {"action": "expect", "check": "ota_final", "state": "done"},
        {"action": "dance"},
    ])
    got = problems(data)
    assert got[0].startswith("steps[0].second: Extra inputs are not permitted (unknown key")
    assert got[1].startswith("steps[1].off_s: Input should be greater than or equal to 0")
    assert got[2].startswith("steps[2]: Input tag 'meteor' found using 'fault'")
    assert "power_cut" in got[2] and "network_loss" in got[2]
    assert got[3].startswith("steps[3].timeout_s: Input should be greater than 0")
    assert got[4].startswith("steps[4].state: Input should be 'committed', 'failed' or "
                             "'rolled_back'")
    assert got[5].startswith("steps[5]: Input tag 'dance' found using 'action'")


def test_cross_checks_name_devices() -> None:
    got = problems(base(steps=[{"action": "deploy", "version": 2, "devices": ["c"]}]))
    assert got == ["(top level): steps[0] (deploy) names unknown device(s) ['c']; devices are "
                   "['a', 'b']"]
    got = problems(base(devices=[{"id": "a", "network": "direct"}],
                        steps=[{"action": "fault", "fault": "network_loss", "device": "a",
                                "duration_s": 3}]))
    assert "device 'a' has network = \"direct\" but a network_loss step targets it" in got[0]
    got = problems(base(devices=[{"id": "a"}, {"id": "a"}]))
    assert "device ids must be unique, repeated: ['a']" in got[0]
    got = problems(base(devices=[{"id": "a/b"}]))
    assert got[0].startswith("devices[0].id: String should match pattern")
    got = problems(base(devices=[{"id": "a", "network": "proxy", "ota_transport": "http"}]))
    assert "ota_transport = \"http\" needs network = \"direct\"" in got[0]


def test_param_errors() -> None:
    got = problems(base(steps=[{"action": "sleep", "seconds": "$nap"}]))
    assert got == ["steps[0].seconds: refers to $nap, which [params] does not define "
                   "(defined: none)"]
    got = problems(base(params={"nap": 1}), nop="3")
    assert got == ["--param nop: the scenario has no such parameter; it has ['nap']"]
    got = problems(base(params={"nap": "long"}, steps=[{"action": "sleep", "seconds": "$nap"}]))
    assert got[0].startswith("steps[0].seconds: Input should be a valid number")


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match="TOML syntax error"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.toml")
    assert hil_main(["run", str(tmp_path / "nope")]) == 2


def ev(seq: int, state: str, ts: float, to: int = 2, **kw: Any) -> dict[str, Any]:
    return {"seq": seq, "state": state, "ts": ts, "to_version": to, "from_version": 1, **kw}


def test_updates_group_events_and_ignore_re_reports() -> None:
    events = [ev(1, "downloading", 10), ev(2, "verifying", 11, artifact="delta"),
              ev(3, "trial", 12), ev(4, "committed", 14), ev(5, "committed", 20),
              ev(6, "downloading", 30, to=3), ev(7, "rolled_back", 33, to=3,
                                                   reason="health-non-finite")]
    ups = updates(events)
    assert [(u.to_version, u.final, u.duration_s) for u in ups] == [(2, "committed", 4.0),
                                                                   (3, "rolled_back", 3.0)]
    assert ups[0].artifact == "delta" and ups[1].reason == "health-non-finite"


def test_gaps_counters_and_lost_lines() -> None:
    assert max_gap([1.0, 1.1, 1.2, 2.0, 2.1, 5.0], [(1.05, 2.05)]) == 0.8
    assert max_gap([], [(1.0, 3.0)]) == 2.0
    assert max_gap([1.0], []) is None
    metrics = [{"ts": 1, "uptime_s": 1, "counters": {"e": 2}},
               {"ts": 2, "uptime_s": 2, "counters": {"e": 5}},
               {"ts": 3, "uptime_s": 0.5, "counters": {"e": 1}}]  # restarted
    assert counter_total(metrics, "e") == 6
    assert counter_total(metrics, "e", live={"e": 4}) == 9
    assert lost_lines(5, {0, 1, 3}) == [2, 4]


def test_crash_hook_is_armed_only_before_the_deploy_that_reaches_it() -> None:
    sc = parse_scenario(base(steps=[
        {"action": "deploy", "version": 2},
        {"action": "fault", "fault": "power_cut", "device": "a", "at_ota_state": "staged",
         "background": True},
        {"action": "deploy", "version": 3, "devices": ["a"]},
        {"action": "fault", "fault": "power_cut", "device": "b", "at_ota_state": "trial"},
    ]))
    ids = ["a", "b"]
    assert crash_state_to_arm(sc.steps, 0, "a", ids) is None  # v2's update must not crash
    assert crash_state_to_arm(sc.steps, 1, "a", ids) == "staged"
    assert crash_state_to_arm(sc.steps, 2, "a", ids) is None
    assert crash_state_to_arm(sc.steps, 0, "b", ids) is None
    assert crash_state_to_arm(sc.steps, 1, "b", ids) == "trial"  # v3 goes to a only


def facts(record: DeviceRecord, **kw: Any) -> DeviceFacts:
    return DeviceFacts(**{"device": "a", "record": record, "written": 0, "since": 0.0,
                          "live_models": [], "live_counters": {}, **kw})


def test_verdicts_say_what_was_wrong() -> None:
    record = DeviceRecord(ota=[ev(1, "downloading", 10), ev(2, "failed", 11,
                                                             reason="smoke-test-failed")])
    verdict = judge(ExpectOtaFinal(action="expect", check="ota_final", state="committed",
                                   version=2), facts(record))
    assert not verdict.passed
    assert verdict.detail.endswith("state failed (wanted committed)")
    assert judge(ExpectOtaFinal(action="expect", check="ota_final", state="committed"),
                 facts(record, since=50.0)).detail.startswith("no update ended since the deploy")
    record.batches = [{"ts": 12.0, "model_version": 1}, {"ts": 13.0, "model_version": 2}]
    live = judge(ExpectLiveModel(action="expect", check="live_model", version=1),
                 facts(record, live_models=[{"slot": "logs", "version": 1}]))
    assert not live.passed and "results after the last update came from v[2]" in live.detail
    assert judge(ExpectLiveModel(action="expect", check="live_model", version=1),
                 facts(record, live_models=None)).detail == ("the agent did not answer the "
                                                             "models query")


def test_the_muted_check_wants_a_mute_quiet_shapes_and_lines_held_back() -> None:
    line = "sshd[7]: Connection closed by 192.0.2.1 port 4242 [preauth] #12"
    mute = AlertMute(id="0123456789ab", shape=message_shape(line), source="device-log",
                     expires=2e9)
    check = ExpectAlertsMuted(action="expect", check="alerts_muted", min_held=1)
    record = DeviceRecord(alert_items=[
        {"source": "device-log", "text": line, "_received": 100.0},  # before the mute
        {"source": "device-log", "text": "kernel: eth0: link down #13", "_received": 200.0},
        {"source": "other", "text": line, "_received": 200.0}])  # another source's
    assert judge(check, facts(record)).detail.startswith("no mute step muted anything")
    ok = judge(check, facts(record, mute=(mute, 150.0), live_counters={"alerts_muted": 2}))
    assert ok.passed and "held back 2" in ok.detail
    held_none = judge(check, facts(record, mute=(mute, 150.0), live_counters={}))
    assert not held_none.passed and "held back None (wanted at least 1)" in held_none.detail
    # the same message from another address and line number, after the settle time: loud
    record.alert_items.append({"source": "device-log", "text": line.replace("192.0.2.1",
                               "198.51.100.9").replace("#12", "#512"), "_received": 156.0})
    loud = judge(check, facts(record, mute=(mute, 150.0), live_counters={"alerts_muted": 2}))
    assert not loud.passed and loud.detail.startswith("1 alert(s) of the muted shape arrived")
    # within settle_s of the mute it may still be in flight: not counted
    assert judge(check.model_copy(update={"settle_s": 10.0}),
                 facts(record, mute=(mute, 150.0), live_counters={"alerts_muted": 2})).passed


def test_proxy_link_freezes_without_closing() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    link = ProxyLink(server.getsockname()[1])
    try:
        client = socket.create_connection(("127.0.0.1", link.device_port), timeout=2)
        client.sendall(b"ping")
        assert client.recv(16) == b"ping"
        link.cut()
        time.sleep(0.2)
        client.sendall(b"lost?")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(16)  # nothing moves, and the connection is not closed either
        link.restore()
        client.settimeout(2)
        assert client.recv(16) == b"lost?"  # held, as a retransmission would deliver it
        client.close()
    finally:
        link.close()
        server.close()


def test_systemd_driver_pure_parts() -> None:
    """A systemd device lives in a namespace like an SSH device; its exit code is read
    from the unit's main-process fields (128 + the signal when killed, as a shell says)."""
    from hil.rig import resolve_networks
    from hil.systemd_device import exit_code_of

    scenario = parse_scenario({**base(), "devices": [{"id": "a", "driver": "systemd"},
                                                     {"id": "b"}]})
    try:
        kinds, _ = resolve_networks(scenario, {"a": "systemd", "b": "local"})
    except RuntimeError as exc:  # no namespaces here (not root): said, not run without
        assert "device 'a' wants a network namespace" in str(exc)
    else:
        assert kinds == {"a": "namespace", "b": "direct"}
    ended = {"ActiveState": "failed", "SubState": "failed"}
    assert exit_code_of({**ended, "ExecMainCode": "2", "ExecMainStatus": "9"}) == 137
    assert exit_code_of({**ended, "ExecMainCode": "1", "ExecMainStatus": "137"}) == 137
    assert exit_code_of({"ActiveState": "inactive", "ExecMainCode": "1",
                         "ExecMainStatus": "0"}) == 0
    assert exit_code_of({"ActiveState": "active", "ExecMainCode": "0",
                         "ExecMainStatus": "0"}) is None
    assert exit_code_of({"ActiveState": "deactivating", "ExecMainCode": "2",
                         "ExecMainStatus": "15"}) is None


def test_an_ssh_devices_exit_file_counts_only_for_its_own_power_on() -> None:
    """The supervisor's exit file names the power on it belongs to: a watcher that reads
    the last run's file while the next power on is starting does not take the old exit
    (the crash's 137) for the new run's."""
    from hil.ssh_device import exit_of_power_on

    assert exit_of_power_on("2 137\n", 2) == 137
    assert exit_of_power_on("1 137\n", 2) is None  # the run before
    assert exit_of_power_on("", 2) is None  # still running
    assert exit_of_power_on("137\n", 2) is None  # a file of another format


def test_systemd_target_cgroups_and_machine_names(tmp_path: Path) -> None:
    """Where a container's own cgroup goes on each cgroup layout, and nspawn-valid, unique
    machine names for any device id."""
    from hil.systemd_target import cgroup_hierarchies, machine_name

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").touch()
    assert cgroup_hierarchies(v2) == [v2]
    hybrid = tmp_path / "hybrid"
    for h in ("systemd", "unified", "memory"):
        (hybrid / h).mkdir(parents=True)
        (hybrid / h / "cgroup.procs").touch()
    assert cgroup_hierarchies(hybrid) == [hybrid / "systemd", hybrid / "unified"]
    assert cgroup_hierarchies(tmp_path / "none") == []  # SystemdTarget refuses, saying so
    a, b = machine_name("pump_07"), machine_name("pump_07")
    assert a != b and a.startswith("pump-07-")
    assert all(c.isalnum() or c == "-" for c in a)
    assert len(machine_name("x" * 64)) <= 49 and machine_name("__").startswith("target-")
