"""The site servers' captures (BIND, xinetd, net-snmp, the ISC DHCP server): what their
configurations and clients hold, how their lines are labelled (the line decisions a
capture showed were needed), and the committed lines they produced
(nanomodel/harvest/scenarios_named.py, scenarios_xinetd.py, scenarios_snmpd.py,
scenarios_dhcpd.py, capture_io.py, overrides.LINE_DECISIONS)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from nanomodel import realtext
from nanomodel.harvest import capture
from nanomodel.harvest.capture_io import captured_rows
from nanomodel.harvest.scenarios import ALL
from nanomodel.harvest.scenarios_dhcpd import POOL, dhcpd_conf, mac
from nanomodel.harvest.scenarios_named import HOSTS, _conf, _queries, _zone
from nanomodel.harvest.scenarios_snmpd import OIDS, _polls, snmpd_conf
from nanomodel.harvest.scenarios_xinetd import _client
from nanomodel.harvest.scenarios_xinetd import _conf as xinetd_conf

HEAD = "Dec  7 04:00:12 vm daemon.info"
ERR = "Dec  7 04:00:12 vm daemon.err"
XFR = "client @0x7f3a6c01d168 10.77.0.2#40531 (plant.lan): transfer of 'plant.lan/IN': "


def _labels(*lines: str) -> list[tuple[str, str]]:
    return [(r["source"], r["label"]) for r in captured_rows("\n".join(lines))]


def test_the_scenarios_are_registered_and_run_after_the_others() -> None:
    assert [ALL[k].__name__ for k in ("a-named", "b-xinetd", "c-snmpd", "d-dhcpd")] == [
        "named", "xinetd", "snmpd", "dhcpd"]
    assert sorted(ALL)[-4:] == ["a-named", "b-xinetd", "c-snmpd", "d-dhcpd"]


def test_a_zone_transfer_ending_is_routine_and_its_failure_is_not() -> None:
    """The harvested failure template (``transfer of '%s/%s': %s: %s``, at error) also
    matches the success line; the line decision tells them apart."""
    assert _labels(
        f"{HEAD} named[80]: {XFR}AXFR started (serial 2026120701)",
        f"{HEAD} named[80]: {XFR}AXFR ended: 1 messages, 17 records, 447 bytes, 0.001 secs "
        "(447000 bytes/sec) (serial 2026120701)",
        f"{HEAD} named[80]: {XFR}AXFR-style IXFR ended: 1 messages, 17 records, 447 bytes",
        f"{ERR} named[80]: {XFR}IXFR: failure: connection reset",
    ) == [("named", "normal")] * 3 + [("named", "network")]


def test_an_unknown_option_in_named_conf_is_named_failing_to_start() -> None:
    """The general rules call an unknown option configuration advice (normal); named
    refuses the whole file for it."""
    rows = captured_rows(
        f"{ERR} named[81]: /etc/bind/named.conf:14: unknown option 'listen-on-port'\n"
        "Dec  7 04:00:12 vm daemon.crit named[81]: loading configuration: failure"
    )
    assert [r["label"] for r in rows] == ["software", "network"]
    assert rows[0]["reason"].startswith("line decision: ")


def test_xinetd_routine_and_trouble_lines() -> None:
    assert _labels(
        f"{HEAD} xinetd[9]: START: daytime-stream pid=12 from=::ffff:10.77.0.10",
        f"{HEAD} xinetd[9]: EXIT: rsync status=0 pid=13 duration=1(sec)",
        f"{ERR} xinetd[9]: Service echo-stream: server exit with 0 running servers",
        f"{HEAD} xinetd[9]: FAIL: rsync per_source_limit from=::ffff:10.77.0.15",
        f"{ERR} xinetd[9]: Deactivating service echo due to excessive incoming connections.  "
        "Restarting in 4 seconds.",
        f"{ERR} xinetd[9]: bind failed (Address already in use (errno = 98)). "
        "service = historian-feed",
    ) == [("xinetd", "normal")] * 3 + [
        ("xinetd", "security"), ("xinetd", "network"), ("xinetd", "network")]


def test_line_decisions_are_per_source() -> None:
    """Another daemon's "unknown option" keeps its own decision (logrotate's is the
    review's software, the rules' advice elsewhere)."""
    rows = captured_rows(f"{ERR} named[1]: {XFR}AXFR ended: 1 messages\n"
                         f"{HEAD} nginx[2]: transfer of 'x/IN': AXFR ended: 1 messages")
    assert rows[0]["reason"].startswith("line decision: ")
    assert not rows[1]["reason"].startswith("line decision: ")


def test_named_configuration_and_zone_are_what_the_scenario_claims(tmp_path: Path) -> None:
    zone = _zone(2026120701)
    assert "2026120701" in zone and all(f"{h}\tIN\tA\t" in zone for h in HOSTS)
    broken = _zone(2026120703, broken=True)
    assert broken.startswith(_zone(2026120703)) and broken.count("(") == zone.count("(") + 1
    conf = _conf("10.77.0.1; 127.0.0.1", 'zone "x" { type hint; file "h"; };\n')
    assert conf.count("{") == conf.count("}")
    assert "dnssec-validation no;" in conf  # the root here is not the signed one
    # Debian's paths (the scratch trees are mounted there), so the lines name them
    assert 'directory "/var/cache/bind";' in conf and 'keys { "rndc-key"; }' in conf
    assert 'include "/etc/bind/rndc.key";' in conf and str(tmp_path) not in conf
    jobs = _queries(2)
    # every lookup comes from the client namespace at one of its addresses, and most are
    # names of the plant, some its reverse zone and some outside it
    assert all(job[0] == "nfcap-cli" and job[1] == "dig" for job in jobs)
    names = Counter("plant.lan" in " ".join(j) for j in jobs)
    assert names[True] > 3 * names[False] > 0


def test_xinetd_configuration_and_clients_are_well_formed(tmp_path: Path) -> None:
    conf = xinetd_conf(tmp_path)
    assert conf.count("{") == conf.count("}")
    services = re.findall(r"^service (\S+)$", conf, re.M)
    assert services == ["daytime", "time", "echo", "rsync", "sensor-dump", "legacy-report",
                        "historian-feed"]
    assert "log_on_success\t= HOST PID DURATION EXIT" in conf
    for code in (_client(13, ("10.77.0.10",)), _client(7, ("10.77.0.11",) * 3, send=b"a\n",
                                                       hold=1.0, parallel=True)):
        compile(code, "<client>", "exec")


def test_sources_limits_which_files_a_capture_writes(tmp_path: Path) -> None:
    """A capture of new scenarios alone must not replace other sources' files (their
    earlier captures' logs may be gone): ``--sources`` writes only those named."""
    log = tmp_path / "syslog.log"
    log.write_text(
        f"{HEAD} named[3]: zone plant.lan/IN: loaded serial 2026120701\n"
        "Dec  7 04:00:12 vm authpriv.info sshd[4]: pam_unix(sshd:session): session opened "
        "for user deploy(uid=1000) by (uid=0)\n"
    )
    out = tmp_path / "captured"
    capture._write([log], out, sources=["named"])
    assert sorted(p.name for p in out.iterdir()) == ["named.jsonl"]
    row = json.loads((out / "named.jsonl").read_text())
    assert row["label"] == "normal"


def test_snmpd_polls_are_numeric_and_mostly_the_monitoring_server() -> None:
    """Debian ships no MIB files: a poll by name would fail in the client, never reach
    snmpd and log nothing."""
    jobs = _polls(4)
    oids = [job[-1] for job in jobs]
    assert all(re.fullmatch(r"(\.\d+)+", oid) for oid in oids) and set(OIDS) <= set(oids)
    assert sum("--clientaddr=10.77.0.10" in job for job in jobs) > len(jobs) / 3
    assert any(job[-2].startswith("udp6:") for job in jobs)  # IPv6 polls too
    conf = snmpd_conf()
    assert "rocommunity plantro 10.77.0.0/24" in conf and "public" not in conf


def test_snmpd_connections_are_routine_and_refused_ones_are_not() -> None:
    assert _labels(
        f"{HEAD} snmpd[5]: Connection from UDP: [10.77.0.10]:41822->[10.77.0.1]:161",
        f"{HEAD} snmpd[5]: Connection from UDP: [10.77.0.59]:41822->[10.77.0.1]:161 REFUSED",
        f"{ERR} snmpd[5]: Error opening specified endpoint \"udp:10.77.0.250:161\"",
    ) == [("snmpd", "normal"), ("snmpd", "security"), ("snmpd", "network")]


def test_dhcpd_configuration_pool_and_its_broken_edit() -> None:
    good, broken = dhcpd_conf(), dhcpd_conf(broken=True)
    assert POOL[1] - POOL[0] + 1 < 14  # fourteen devices and a late one outgrow the pool
    assert f"range 10.78.0.{POOL[0]} 10.78.0.{POOL[1]};" in good
    assert good.count(";") == broken.count(";") + 1 and "option routers 10.78.0.1\n" in broken
    assert len({mac(i) for i in range(16)}) == 16 and mac(10) == "02:4e:46:00:00:0a"


def test_dhcp_server_lines_are_routine_and_a_full_pool_is_not() -> None:
    via = "via nfcap2"
    assert _labels(
        f"{HEAD} dhcpd[7]: DHCPDISCOVER from 02:4e:46:00:00:03 (plc-03) {via}",
        f"{HEAD} dhcpd[7]: DHCPOFFER on 10.78.0.103 to 02:4e:46:00:00:03 (plc-03) {via}",
        f"{HEAD} dhcpd[7]: DHCPREQUEST for 10.78.0.103 (10.78.0.1) from 02:4e:46:00:00:03 "
        f"(plc-03) {via}",
        f"{HEAD} dhcpd[7]: DHCPACK on 10.78.0.103 to 02:4e:46:00:00:03 (plc-03) {via}",
        f"{HEAD} dhcpd[7]: DHCPRELEASE of 10.78.0.107 from 02:4e:46:00:00:06 (plc-06) {via} "
        "(found)",
        f"{HEAD} dhcpd[7]: DHCPREQUEST for 10.99.0.5 from 02:4e:46:00:00:09 {via}: wrong "
        "network.",
        f"{ERR} dhcpd[7]: DHCPDISCOVER from 02:4e:46:00:00:0e {via}: network 10.78.0.0/24: no "
        "free leases",
    ) == [("isc-dhcp", "normal")] * 6 + [("isc-dhcp", "network")]


def test_add_keeps_a_sources_earlier_lines_and_adds_each_new_one_once(tmp_path: Path) -> None:
    """dhcpd's lines join dhclient's in isc-dhcp's file although dhclient's capture log is
    gone; adding the same capture again changes nothing."""
    out = tmp_path / "captured"
    out.mkdir()
    earlier = {"source": "isc-dhcp", "text": "dhclient[3]: DHCPACK of 10.77.0.50 from "
               "10.77.0.1", "label": "normal", "reason": "r", "template_origin": "",
               "how": "dhcp", "level": "info"}
    (out / "isc-dhcp.jsonl").write_text(json.dumps(earlier) + "\n")
    log = tmp_path / "syslog.log"
    log.write_text(f"{HEAD} dhcpd[7]: DHCPACK on 10.78.0.103 to 02:4e:46:00:00:03 via nfcap2\n")
    for _ in range(2):
        capture._write([log], out, sources=["isc-dhcp"], add=True)
        rows = [json.loads(x) for x in (out / "isc-dhcp.jsonl").read_text().splitlines()]
        assert [r["text"].split("[")[0] for r in rows] == ["dhclient", "dhcpd"]


@pytest.mark.parametrize(("source", "at_least", "refusals"),
                         [("named", 150, True), ("xinetd", 150, True), ("snmpd", 60, True),
                          ("isc-dhcp", 150, False)])
def test_committed_captures_are_mostly_routine_with_their_trouble(
    source: str, at_least: int, refusals: bool
) -> None:
    lines = realtext.load_captured_next([source])
    labels = Counter(c.label for c in lines)
    assert labels.total() >= at_least
    assert labels["normal"] > 0.8 * labels.total()
    # refused hosts are security; a DHCP server refuses nobody (a full pool is network)
    assert (labels["security"] > 0) == refusals
    assert labels.total() - labels["normal"] - labels["security"] > 0
    # every line records the scenario step that made it
    program = "dhcpd" if source == "isc-dhcp" else source
    assert all(c.how.startswith(f"{program} in netns: ") for c in lines)


def test_the_december_captures_are_trained_on_and_kept_apart() -> None:
    """captured_next/ waited for a retrain and is trained on since rule 6 (docs/model.md
    "The trade taken"): the shipped recipe's lines hold every one of them, while the other
    folder's captured lines do not include them, so a recipe without them draws exactly
    what it drew before. The earlier captures of the same sources (dhclient's) stay where
    they were."""
    from nanomodel.build_default import MIX, real_training_lines

    nxt = realtext.load_captured_next()
    assert {c.source for c in nxt} == {"named", "xinetd", "snmpd", "isc-dhcp", "linux"}
    assert {c.collection for c in nxt} == {"captured_next"}
    captured = realtext.load_captured()
    assert not any(c.collection == "captured_next" for c in captured)
    assert not {c.text for c in captured} & {c.text for c in nxt}
    assert any(c.text.startswith("dhclient") for c in realtext.load_captured(["isc-dhcp"]))
    assert MIX.next_lines
    trained = real_training_lines()
    tail = trained[-len(nxt):]  # appended: as logged, some behind a time-and-host head
    assert [(label, source) for _, label, source in tail] == [(c.label, c.source) for c in nxt]
    assert all(text.endswith(c.text) for (text, _, _), c in zip(tail, nxt, strict=True))
    assert len(real_training_lines(with_next=False)) == len(trained) - len(nxt)


def test_a_retrain_with_the_next_lines_can_be_measured() -> None:
    """``real_lines`` takes them only when asked (the shipped recipe asks), after the
    lines it drew without them, drawn alike."""
    import random

    without = realtext.real_lines(random.Random(1), sources=["snmpd"])
    with_next = realtext.real_lines(random.Random(1), sources=["snmpd"], with_next=True)
    added = realtext.load_captured_next(["snmpd"])
    assert len(with_next) - len(without) == len(added) > 0
    assert with_next[: len(without)] == without  # the shipped lines first, drawn alike
    assert {label for _, label, _ in with_next[len(without):]} == {c.label for c in added}
