"""kill -9 at every OTA state: the real agent dies right after persisting the state
(started through ``hil/ota_crash.py``: an ``os._exit(137)`` — no cleanup runs, and no
hook in the agent itself), restarts, and
must come back with exactly one consistent live model and the update finished
(before trial) or undone (trial)."""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.models import finetuned, traffic, v1_bundle
from hil.ota_crash import CRASH_EXIT
from tests.support.mosquitto import Mosquitto
from tests.support.ota_rig import LineWriter, Repo, Reports, make_agent

DEV = "ota-crash"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    base = tmp_path_factory.mktemp("crash-repo")
    r = Repo(base / "tuf")
    r.publish(v1_bundle())
    r.publish(finetuned(2), delta_from=(1,))
    yield r
    r.close()


@pytest.mark.parametrize("state", ["downloading", "verifying", "staged", "smoke_testing",
                                   "trial", "committed"])
def test_kill9_at_each_state_recovers_one_consistent_model(
        state: str, tmp_path: Path, broker: Mosquitto, repo: Repo) -> None:
    log = tmp_path / "device.log"
    log.write_text("")
    state_dir = tmp_path / f"state-{DEV}"
    reports = Reports(broker.port, DEV)
    reports.set_desired(1, 2)  # retained: waiting for the agent when it connects
    crashing = make_agent(tmp_path, DEV, broker.port, repo, log, crash_at=state,
                          duration_s=0.3)
    restarted = make_agent(tmp_path, DEV, broker.port, repo, log, duration_s=0.3)
    try:
        crashing.start(wait=False)
        assert crashing.proc is not None
        assert crashing.proc.wait(60) == CRASH_EXIT, crashing.output()
        crashing.stop()
        record = json.loads((state_dir / "ota" / "logs.json").read_bytes())
        assert record["state"] == state  # died right after persisting it

        restarted.start()
        undone = state == "trial"
        final, live = ("rolled_back", 1) if undone else ("committed", 2)
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"))
        assert done["state"] == final, reports.summary()
        if undone:
            assert done["reason"] == "interrupted-trial"
        time.sleep(0.5)  # nothing else happens: the retained desired state is settled
        assert reports.ota()[-1]["state"] == final, reports.summary()

        assert restarted.query("models")["result"][0]["version"] == live
        ota = restarted.query("ota")["result"]
        assert ota["state"] == final and ota["live"]["version"] == live
        installed = sorted(p.name for p in (state_dir / "models" / "logs").iterdir())
        assert installed == ([] if undone else [ota["committed"]["file"]])
        assert [p.name for p in (state_dir / "ota" / "downloads" / "logs").iterdir()] == []

        lines = [f"{text} after-restart-{i}" for i, text in enumerate(traffic(20, seed=5))]
        with open(log, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
        reports.wait_results(lines)
        assert {v for v, item in reports.result_items() if item["text"] in lines} == {live}
        assert restarted.query("metrics")["result"]["counters"].get("inference_errors", 0) == 0
    finally:
        restarted.stop()
        reports.close()


def test_the_agent_has_no_crash_hook_of_its_own() -> None:
    """The fault comes from the test's wrapper; nothing in the agent ends its own process
    abruptly, so no environment or config can crash a production unit on purpose."""
    root = Path(__file__).resolve().parents[1] / "agent"
    calls = [f"{path.relative_to(root.parent)}:{node.lineno}"
             for path in sorted(root.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Attribute) and node.attr == "_exit"]
    assert calls == []


def test_a_clean_stop_during_the_trial_tries_the_candidate_again(
        tmp_path: Path, broker: Mosquitto, repo: Repo) -> None:
    """SIGTERM (a package upgrade, a reboot) during the trial is not a verdict on the
    model: after the restart it is smoke-tested and tried again, and committed. Before
    (review, December 2026) it was a final interrupted-trial failure, as a kill is (above),
    and a rollout counted it against the release."""
    log = tmp_path / "device.log"
    log.write_text("")
    state_dir = tmp_path / f"state-{DEV}"
    reports = Reports(broker.port, DEV)
    reports.set_desired(1, 2)
    # A trial long enough to be stopped in the middle of it.
    first = make_agent(tmp_path, DEV, broker.port, repo, log, duration_s=60.0,
                       min_inferences=1, timeout_s=120.0)
    restarted = make_agent(tmp_path, DEV, broker.port, repo, log, duration_s=0.5,
                           min_inferences=1, timeout_s=30.0)
    writer: LineWriter | None = None
    try:
        first.start()
        reports.wait_ota(lambda e: e["state"] == "trial")
        assert first.stop() == 0
        record = json.loads((state_dir / "ota" / "logs.json").read_bytes())
        assert (record["state"], record["trial_stopped"]) == ("trial", True)

        restarted.start()
        # Traffic for the second trial to judge, written on while it runs: a burst written
        # at the restart could all be read before the candidate went live under load, and
        # the trial then waited out its timeout with no line (seen beside CPU hogs).
        writer = LineWriter(log, traffic(40, seed=9), per_second=50).start()
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"))
        assert (done["state"], done["to_version"]) == ("committed", 2), reports.summary()
        states = [e["state"] for e in reports.ota()]
        assert states.count("trial") == 2 and "rolled_back" not in states, states
        assert restarted.query("models")["result"][0]["version"] == 2
    finally:
        if writer is not None:
            writer.stop()
        first.stop()
        restarted.stop()
        reports.close()


def test_a_power_cut_during_the_trial_tries_the_candidate_again(
        tmp_path: Path, broker: Mosquitto, repo: Repo) -> None:
    """kill -9 during the trial and the device comes back in a new boot (its kernel boot
    id changed: power was lost, or a reset), not just the agent: the candidate killed
    nothing, so it is tried again and committed. Before (review, December 2026) a power cut
    was a final interrupted-trial failure, as the agent's own death is (above), and a
    rollout on flaky power counted it against the release."""
    log = tmp_path / "device.log"
    log.write_text("")
    boot = tmp_path / "boot_id"  # what /proc/sys/kernel/random/boot_id is on a device
    boot.write_text("0b4c6f2e-0000-4000-8000-000000000001\n")
    reports = Reports(broker.port, DEV)
    reports.set_desired(1, 2)
    cut = make_agent(tmp_path, DEV, broker.port, repo, log, crash_at="trial",
                     duration_s=0.3, boot_id_file=boot)
    restarted = make_agent(tmp_path, DEV, broker.port, repo, log, duration_s=0.3,
                           boot_id_file=boot)
    writer: LineWriter | None = None
    try:
        cut.start(wait=False)
        assert cut.proc is not None
        assert cut.proc.wait(60) == CRASH_EXIT, cut.output()
        cut.stop()
        boot.write_text("0b4c6f2e-0000-4000-8000-000000000002\n")  # power back: a new boot
        restarted.start()
        # Traffic for the second trial to judge, written on while it runs: a burst written
        # at the restart could all be read before the candidate went live under load, and
        # the trial then waited out its timeout with no line (seen beside CPU hogs).
        writer = LineWriter(log, traffic(40, seed=9), per_second=50).start()
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"))
        assert (done["state"], done["to_version"]) == ("committed", 2), reports.summary()
        again = [e for e in reports.ota() if e["state"] == "staged" and e["detail"]
                 and "new boot" in e["detail"]]
        assert len(again) == 1, reports.summary()
        assert restarted.query("models")["result"][0]["version"] == 2
    finally:
        if writer is not None:
            writer.stop()
        cut.stop()
        restarted.stop()
        reports.close()
