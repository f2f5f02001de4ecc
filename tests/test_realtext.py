"""The real-text evidence: files parse, labels are valid, templates render to log lines."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from nanomodel import realtext
from nanomodel.harvest import clex
from nanomodel.harvest.rules import label_template
from nanomodel.realfill import fill

LEFTOVER = re.compile(
    r"%(?:[-+ #0']*\d*(?:\.\d+)?(?:hh|h|ll|l|j|z|t|L|q)?[diouxXeEfgGcspmV]|\{\w+\})"
)
# Sources whose alerts or normal lines are genuinely absent, and why (see LABELLING.md).
ONE_SIDED: dict[str, str] = {}


def test_every_file_parses_with_the_documented_fields() -> None:
    for kind, fields in (
        ("templates", {"source", "package", "origin", "template", "label", "reason"}),
        ("captured", {"source", "text", "label", "reason", "how"}),
        ("samples", {"source", "text", "label", "reason", "how", "template_origin"}),
    ):
        folder = realtext.DATA / kind
        files = sorted(folder.glob("*.jsonl"))
        assert files or kind != "templates", f"no {kind} files"
        for path in files:
            for n, line in enumerate(path.read_text().splitlines(), 1):
                row = json.loads(line)
                assert fields <= set(row), f"{path.name}:{n} lacks {fields - set(row)}"
                assert row["label"] in realtext.LABELS, f"{path.name}:{n}: {row['label']}"
                assert row["reason"].strip(), f"{path.name}:{n}: empty reason"
                assert row["source"] == path.stem, f"{path.name}:{n}: source {row['source']}"


def test_templates_cite_package_version_and_file_line() -> None:
    for t in realtext.load_templates():
        assert re.fullmatch(r"\S+ \S*\d\S*", t.package), t.package
        assert re.fullmatch(r"\S+:\d+", t.origin), t.origin


def test_thousands_of_templates_with_hundreds_of_alerts_and_rich_normal_chatter() -> None:
    counts = Counter(t.label for t in realtext.load_templates())
    assert sum(counts.values()) >= 5000
    assert sum(v for k, v in counts.items() if k != "normal") >= 500
    assert counts["normal"] >= 2000
    for label in realtext.LABELS:
        assert counts[label] > 0, f"no template labelled {label}"


def test_every_template_renders_without_leftover_conversions() -> None:
    rng = random.Random(0)
    bad = []
    for t in realtext.load_templates():
        line = realtext.render(t, rng)
        # A literal "%%" renders as "%" and may look like a conversion ("100% correct").
        leftovers = len(LEFTOVER.findall(line)) + line.count("{}")
        if leftovers > t.template.count("%%") or not line.strip():
            bad.append((t.source, t.origin, t.template, line))
    assert not bad, bad[:10]


def test_each_source_has_normal_and_alert_templates_or_says_why() -> None:
    by_source: dict[str, set[str]] = {}
    for t in realtext.load_templates():
        by_source.setdefault(t.source, set()).add("normal" if t.label == "normal" else "alert")
    for source, kinds in by_source.items():
        if source in ONE_SIDED:
            continue
        assert kinds == {"normal", "alert"}, f"{source} has only {kinds}"


def test_rendering_is_deterministic_for_a_seed() -> None:
    a = realtext.real_lines(random.Random(7), per_template=1, sources=["openssh", "mosquitto"])
    b = realtext.real_lines(random.Random(7), per_template=1, sources=["openssh", "mosquitto"])
    c = realtext.real_lines(random.Random(8), per_template=1, sources=["openssh", "mosquitto"])
    assert a == b
    assert a != c
    assert {s for _, _, s in a} == {"openssh", "mosquitto"}


def test_sources_filter_and_listing() -> None:
    names = realtext.sources()
    assert {"openssh", "systemd", "linux", "mosquitto"} <= set(names)
    only = realtext.load_templates(["chrony"])
    assert only and {t.source for t in only} == {"chrony"}


def test_lines_come_with_and_without_a_syslog_prefix() -> None:
    lines = realtext.real_lines(
        random.Random(1), per_template=2, sources=["openssh"], captured=False
    )
    prefixed = [t for t, _, _ in lines if re.search(r"\bsshd\[\d+\]: ", t)]
    assert 0.2 * len(lines) < len(prefixed) < 0.8 * len(lines)


_HEAD = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ ")


def test_a_timestamp_is_no_cue_captured_lines_carry_heads_like_templates() -> None:
    """Captured syslog lines get the time-and-host head as often as rendered templates:
    with it only on templates (four in ten alerts) a timestamp itself read as trouble."""
    rng = random.Random(2)
    for sources in (["openssh", "pam"], ["postfix"]):
        lines = realtext.real_lines(rng, per_template=1, sources=sources)
        captured = {(c.text, c.source) for c in realtext.load_captured(sources)}
        bare = [t for t, _, s in lines if (t, s) in captured]
        headed = [t for t, _, s in lines
                  if (t, s) not in captured and (_HEAD.sub("", t, count=1), s) in captured]
        rendered = [t for t, _, s in lines if t not in bare and t not in headed]
        share = len(headed) / (len(headed) + len(bare))
        share_rendered = sum(bool(_HEAD.match(t)) for t in rendered) / len(rendered)
        assert 0.3 < share < 0.5 and abs(share - share_rendered) < 0.1, (share, share_rendered)
    # A line in its own file's format (ZooKeeper's log4j) keeps it: no syslog head.
    zk = realtext.real_lines(rng, per_template=1, sources=["zookeeper"])
    zk_captured = [c.text for c in realtext.load_captured(["zookeeper"])]
    assert sum(t in set(zk_captured) for t, _, _ in zk) == len(zk_captured)


@pytest.mark.parametrize(
    ("template", "expect"),
    [
        (
            "Failed password for %s from %.200s port %d ssh2",
            r"Failed password for \S+ from \S+ port \d+ ssh2",
        ),
        ("%{iface}: Lost carrier", r"(eth|wlan|en|usb|br|wg|tun)\w*: Lost carrier"),
        ("lease of %s obtained, lease time %u", r"lease of \S+ obtained, lease time \d+"),
        ("open %s: %m", r"open /\S+: [A-Z][a-z].*"),
        ("MAC " + clex.BUILTIN_MACROS["MACSTR"], r"MAC ([0-9a-f]{2}:){5}[0-9a-f]{2}"),
        ("Got {} from {}", r"Got \S+ from \S+"),
        ("100%% done", r"100% done"),
        # sshd's reverse-DNS checks: a host name after "maps to"/"getaddrinfo for", its
        # address in the brackets
        (
            "reverse mapping checking getaddrinfo for %.700s [%s] failed",
            r"reverse mapping checking getaddrinfo for [a-z][\w.-]* \[[0-9a-f.:]+\] failed",
        ),
        ("Address %.100s maps to %.600s, but", r"Address \S+ maps to [a-z][\w.-]*, but"),
        ("File does not exist: %s", r"File does not exist: /\S+"),
    ],
)
def test_fill_gives_values_that_fit_their_context(template: str, expect: str) -> None:
    assert re.fullmatch(expect, fill(template, random.Random(3))), fill(template, random.Random(3))


def test_known_lines_get_the_honest_label() -> None:
    by_text = {(t.source, t.template): t.label for t in realtext.load_templates()}
    assert by_text[("openssh", "Connection closed by %s port %d [preauth]")] == "normal"
    assert by_text[("openssh", "Received disconnect from %s port %d:%d: %s [preauth]")] == "normal"
    assert by_text[("openssh", "Accepted publickey for %s from %s port %d ssh2: %s %s")] == "normal"
    assert by_text[("openssh", "Failed password for %s from %s port %d ssh2")] == "security"
    assert by_text[("systemd", "Started %s.")] == "normal"
    assert by_text[("systemd", "Failed to start %s.")] == "software"


@pytest.mark.parametrize(
    ("text", "level", "label"),
    [
        ("Invalid user %s from %s", "info", "security"),
        ("Under-voltage detected! (0x%08x)", "warning", "power"),
        ("%s: temperature back to normal", "warning", "normal"),
        ("Client %s disconnected.", "error", "normal"),
        ("lease of %s obtained", "info", "normal"),
        ("Lease lost on %s", "info", "network"),
        ("Buffer I/O error on dev %s, logical block %llu", "error", "storage"),
        ("Out of memory: Killed process %d (%s)", "error", "software"),
        ("option %s is deprecated", "warning", "normal"),
    ],
)
def test_rules_decide_by_meaning_not_level(text: str, level: str, label: str) -> None:
    assert label_template(text, level, "network")[0] == label


def test_clex_reads_concatenated_literals_macros_and_java_concatenation() -> None:
    src = (
        'x(); logit("Accepted %s for " "%s from " MACSTR, a, b);\n'
        'LOG.warn("Got " + n + " bytes", e);'
    )
    calls = list(clex.find_calls(src, re.compile(r"logit|LOG\.warn")))
    assert [c.name for c in calls] == ["logit", "LOG.warn"]
    fmt, _ = clex.format_of(calls[0], clex.BUILTIN_MACROS) or ("", 0)
    assert fmt == "Accepted %s for %s from %02x:%02x:%02x:%02x:%02x:%02x"
    assert clex.format_of(calls[1], {}, java=True) == ("Got {} bytes", 0)
    assert calls[1].line == 2


def test_clex_systemd_format_macros_carry_their_percent() -> None:
    src = 'log_unit_notice(u, "Killing process " PID_FMT " (%s), uid " UID_FMT, pid, c, uid);'
    (call,) = clex.find_calls(src, re.compile(r"log_unit_notice"))
    fmt, _ = clex.format_of(call, clex.BUILTIN_MACROS) or ("", 0)
    assert fmt == "Killing process %i (%s), uid %u"


def test_harvest_reads_a_package_end_to_end(tmp_path) -> None:
    """A tiny unpacked source package goes through the same harvester as the real ones."""
    from nanomodel.harvest import run
    from nanomodel.harvest.sources import Source

    (tmp_path / "gizmod_1.0-2.dsc").write_text("Source: gizmod\nVersion: 1:1.0-2\n")
    pkg = tmp_path / "gizmod-1.0"
    (pkg / "src").mkdir(parents=True)
    (pkg / "src" / "main.c").write_text(
        '#define EV_UP "LINK-UP "\n'
        "int main(void) {\n"
        '  syslog(LOG_INFO, EV_UP "on %s, speed %d Mb/s", ifname, speed);\n'
        '  syslog(LOG_ERR, "cannot open %s: %m", path);\n'
        '  syslog(LOG_DEBUG, "poll loop tick %d", n);\n'
        '  syslog(LOG_WARNING, "Under-voltage detected on rail %s", rail);\n'
        '  syslog(LOG_INFO, "%s", msg);\n'
        "}\n"
    )
    src = Source("gizmod", "gizmod", ("src/*.c",), r"syslog", "hardware")
    rows = list(run.harvest_source(tmp_path, src))
    by_template = {r["template"]: r for r in rows}
    assert set(by_template) == {
        "LINK-UP on %s, speed %d Mb/s",
        "cannot open %s: %m",
        "Under-voltage detected on rail %s",
    }  # debug and text-free formats are dropped
    assert by_template["LINK-UP on %s, speed %d Mb/s"]["label"] == "normal"
    assert by_template["cannot open %s: %m"]["label"] == "hardware"
    assert by_template["Under-voltage detected on rail %s"]["label"] == "power"
    assert by_template["cannot open %s: %m"]["origin"] == "src/main.c:4"
    assert by_template["cannot open %s: %m"]["package"] == "gizmod 1:1.0-2"


def test_captured_syslog_lines_take_their_templates_labels() -> None:
    from nanomodel.harvest.capture_io import captured_rows

    log = "\n".join(
        [
            "Dec  3 07:51:51 vm user.notice nfcapture: BEGIN sshd in netns: wrong password",
            "Dec  3 07:52:01 vm auth.info sshd[25727]: "
            "Failed password for root from 10.77.0.2 port 34862 ssh2",
            "Dec  3 07:52:02 vm auth.info sshd[25727]: "
            "Connection closed by authenticating user root 10.77.0.2 port 34862 [preauth]",
            "Dec  3 07:52:03 vm authpriv.notice sshd[25748]: pam_unix(sshd:auth): "
            "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
            "rhost=10.77.0.2  user=root",
            "Dec  3 07:52:04 vm daemon.notice mosquitto[29574]: "
            "1796284446: Client pump-00 disconnected.",
            "Dec  3 07:52:05 vm daemon.info someoneelse[1]: not one of ours",
        ]
    )
    rows = captured_rows(log)
    assert [(r["source"], r["label"]) for r in rows] == [
        ("openssh", "security"),
        ("openssh", "normal"),
        ("pam", "security"),
        ("mosquitto", "normal"),
    ]
    assert all(r["how"] == "sshd in netns: wrong password" for r in rows)
    assert rows[0]["text"].startswith("sshd[25727]: Failed password")
    assert rows[0]["reason"].startswith("template auth.c:")


def test_level_only_alerts_are_capped_per_category_but_rules_are_kept() -> None:
    from nanomodel.harvest.run import cap_level_alerts

    rows = [
        {"template": f"t{i}", "label": "software", "reason": "level: logged at error"}
        for i in range(10)
    ]
    rows += [{"template": "seg", "label": "software", "reason": "rule:crash: ..."}]
    rows += [{"template": "ok", "label": "normal", "reason": "level: info"}]
    kept = cap_level_alerts(rows, 3)
    assert len(kept) == 5 and {"seg", "ok"} <= {r["template"] for r in kept}
    assert kept == cap_level_alerts(list(rows), 3)  # the same choice every run


def test_apache_message_numbers_and_levels() -> None:
    from nanomodel.harvest.sources import call_level

    src = (
        'ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(00126) "Invalid URI in request %s", x);'
    )
    (call,) = clex.find_calls(src, re.compile(r"ap_log_rerror"))
    fmt, idx = clex.format_of(call, clex.BUILTIN_MACROS) or ("", 0)
    assert fmt == "AH00126: Invalid URI in request %s"
    assert call_level(call.name, clex.level_words(call, idx)) == "error"
    startup = 'ap_log_error(APLOG_MARK, APLOG_STARTUP, 0, NULL, APLOGNO(00489) "%s configured");'
    (call,) = clex.find_calls(startup, re.compile(r"ap_log_error"))
    _, idx = clex.format_of(call, clex.BUILTIN_MACROS) or ("", 0)
    assert call_level(call.name, clex.level_words(call, idx)) == "notice"


_OSM_STAMP = r"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{6} \[[0-9A-F]{4,8}\] "


@pytest.mark.parametrize(
    ("source", "level", "form"),
    [
        # Slurm's own log file (LogTimeFormat iso8601_ms): "[2026-12-03T10:15:02.123] error: ..."
        ("slurm", "error", r"\[2025-03-\d\dT\d\d:\d\d:\d\d\.\d{3}\] "),
        # opensm.log: "Dec 03 10:15:02 123456 [7FFF1234] 0x01 -> osm_...: ERR ..."
        ("opensm", "error", _OSM_STAMP + r"0x01 -> "),
        ("opensm", "info", _OSM_STAMP + r"0x(02|80) -> "),
    ],
)
def test_cluster_daemons_write_their_own_log_format(source: str, level: str, form: str) -> None:
    rng = random.Random(5)
    for _ in range(20):
        assert re.fullmatch(form, realtext.native_prefix(source, level, rng))


def test_cluster_daemon_lines_come_in_their_own_format_or_behind_syslog() -> None:
    lines = realtext.real_lines(
        random.Random(2), per_template=2, sources=["slurm", "opensm"], captured=False
    )
    native = re.compile(r"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{6} \[[0-9A-F]+\] 0x\d\d -> ")
    own = [t for t, _, s in lines if s == "opensm" and native.search(t)]
    syslog = [t for t, _, s in lines if s == "slurm" and re.search(r"\bslurm(ctld|d)\[\d+\]: ", t)]
    assert own and syslog
    # a line of opensm.log is not also behind a syslog prefix
    assert all(native.match(t) for t in own)
    # Slurm's %pJ/%ps conversions render as Slurm writes them, not as pointers
    assert not [t for t, _, s in lines if s == "slurm" and re.search(r"0x[0-9a-f]{16}[JSsA]", t)]
    assert any(re.search(r"JobId=\d+", t) for t, _, s in lines if s == "slurm")


def test_apache_lines_in_the_older_releases_framing() -> None:
    """Apache 2.0/2.2's error_log: no module tag, pid or AH number; a 404 at [error]
    with the client (2.4 logs it at info); rendered and captured lines both."""
    from nanomodel.realframes import apache22_captured, apache22_line

    rng = random.Random(4)
    line = apache22_line("AH00128: File does not exist: /var/www/html/x.php", "info", rng)
    assert re.fullmatch(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d 20\d\d\] \[error\] "
                        r"\[client [0-9a-z.:-]+\] File does not exist: /var/www/html/x\.php"
                        r"(, referer: http://\S+)?", line), line
    other = apache22_line("AH00094: Command line: 'x'", "notice", rng)
    assert "] [notice] " in other and "AH00094" not in other and "[pid" not in other
    captured = apache22_captured(
        "apache2[15313]: [core:info] [pid 15313:tid 15317] [client 10.77.0.33:46939] "
        "AH00128: File does not exist: /var/www/html/robots.txt", rng)
    assert captured is not None and captured.split("] ", 1)[1].startswith(
        "[error] [client 10.77.0.33] File does not exist: /var/www/html/robots.txt"), captured
    assert apache22_captured("sshd[1]: Accepted password for a", rng) is None
    off = realtext.real_lines(random.Random(1), sources=["apache2"])
    on = realtext.real_lines(random.Random(1), sources=["apache2"], apache22_share=0.3)
    older = re.compile(r"\d{4}\] \[error\] \[client \S+\] File does not exist")
    assert not any(older.search(t) for t, _, _ in off)
    assert sum(bool(older.search(t)) for t, _, _ in on) > 20
    assert [lab for _, lab, _ in on] == [lab for _, lab, _ in off]
    assert realtext.real_lines(random.Random(1), sources=["apache2"], apache22_share=0.0) == off
