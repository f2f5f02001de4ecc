"""logcheck's healthy-line rules: stored honestly, rendered as lines the rules match, and kept
out of a held-out source's model."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from nanomodel import logcheck, realtext
from nanomodel.harvest.logcheck import Overruler, rule_sources
from nanomodel.realtrain import MixConfig, training_rows

HEADED = (r"^(\w{3} [ :[:digit:]]{11}|[0-9T:.+-]{32}) [._[:alnum:]-]+ sshd\[[[:digit:]]+\]: "
          r"Accepted (password|publickey) for [^[:space:]]+ from [^[:space:]]+ port "
          r"[[:digit:]]+( ssh2)?$")


def test_every_stored_rule_is_normal_with_its_reason_and_known_sources() -> None:
    known = set(realtext.sources())
    rows = [json.loads(line) for path in sorted((realtext.DATA / "logcheck").glob("*.jsonl"))
            for line in path.read_text().splitlines()]
    assert len(rows) >= 1000
    for row in rows:
        assert row["label"] == "normal" and row["reason"].startswith("logcheck-database ")
        assert row["level"] in ("ignore.d.paranoid", "ignore.d.server")
        assert set(row["sources"]) <= known, row
        assert not row["expression"].startswith("^("), "the time-and-host head is stripped"
    files = Counter(r["file"] for r in rows)
    assert len(files) >= 100, "most of the rules speak for daemons our harvest never read"
    assert sum(1 for r in rows if not r["sources"]) > len(rows) / 2


def test_a_rule_becomes_lines_it_matches_with_values_that_read_like_logs() -> None:
    expression = logcheck.strip_head(HEADED)
    assert expression.startswith("sshd\\[")
    rng = random.Random(1)
    lines = [logcheck.render_rule(expression, rng, "openssh") for _ in range(20)]
    pattern = re.compile(logcheck.posix_to_python(expression))
    assert all(line is not None and pattern.search(line) for line in lines)
    assert len(set(lines)) > 10, "values are drawn, not fixed"
    # the filler's values: an address after "from", a port after "port"
    assert any(re.search(r"from \d+\.\d+\.\d+\.\d+ port \d+", line or "") for line in lines)


def test_nearly_every_stored_rule_renders() -> None:
    rng = random.Random(0)
    rules = logcheck.load_rules()
    rendered = [logcheck.render_rule(r.expression, rng) for r in rules]
    assert sum(r is not None for r in rendered) >= 0.97 * len(rules)


def test_alternations_and_optional_parts_are_drawn() -> None:
    rng = random.Random(2)
    seen = {logcheck.render_rule(r"cron\[[0-9]+\]: job (started|finished)( again)?$", rng)
            for _ in range(40)}
    assert {s.split(": ", 1)[1] for s in seen if s} == {
        "job started", "job finished", "job started again", "job finished again"}


def test_a_held_out_source_gets_none_of_its_rules() -> None:
    known = set(realtext.sources())
    everything = logcheck.logcheck_lines(random.Random(0), 1, known=known, trained=known)
    without_ssh = logcheck.logcheck_lines(random.Random(0), 1, known=known,
                                          trained=known - {"openssh"})
    ssh_rules = {r.file for r in logcheck.load_rules() if "openssh" in r.sources}
    assert ssh_rules and len(without_ssh) < len(everything)
    assert not any(re.search(r"\bsshd\[", text) for text, _, _ in without_ssh)
    assert all(label == "normal" and source.startswith("logcheck:")
               for _, label, source in everything)


def test_training_rows_add_the_rules_only_when_asked_and_never_a_held_out_sources() -> None:
    real = [("sshd[1]: Accepted password for pi from 10.0.0.2 port 2222 ssh2", "normal",
             "openssh")]
    plain = MixConfig(corpus_lines=0, logcheck_per_rule=0)
    texts, _, _ = training_rows(real, plain)
    assert len(texts) == 1
    texts, ys, _ = training_rows(real, MixConfig(corpus_lines=0, logcheck_per_rule=1))
    assert len(texts) > 500 and set(ys.tolist()) == {realtext.LABELS.index("normal")}
    # the held-out evaluation trains without e.g. the kernel: none of logcheck's kernel rules
    assert not any(re.search(r"\bkernel: ", t) for t in texts)


@pytest.mark.parametrize(("file", "expression", "expected"), [
    ("ssh", r"sshd\[[0-9]+\]: Accepted publickey for [^ ]+", ["openssh", "pam"]),
    ("dovecot", r"dovecot: imap-login: Login: user=<[^>]+>", []),
    ("passwd", r"passwd\[[0-9]+\]: pam_unix\(passwd:chauthtok\): password changed", ["pam"]),
    ("bind", r"named\[[0-9]+\]: reloading$", ["named"]),
])
def test_a_rule_names_the_sources_it_speaks_for(file: str, expression: str,
                                                expected: list[str]) -> None:
    assert rule_sources(file, expression) == expected


def test_our_reviewed_alerts_overrule_logcheck() -> None:
    overruler = Overruler()
    failed = r"sshd\[[[:digit:]]+\]: Failed password for [^[:space:]]+ from [.[:digit:]]+ port " \
             r"[[:digit:]]+ ssh2$"
    verdict = overruler.verdict(failed, ["openssh", "pam"])
    assert verdict is not None and "security" in verdict
    accepted = r"sshd\[[[:digit:]]+\]: Accepted password for [^[:space:]]+ from [.[:digit:]]+ " \
               r"port [[:digit:]]+ ssh2$"
    assert overruler.verdict(accepted, ["openssh", "pam"]) is None
    stored = [r for r in logcheck.load_rules() if "Failed (keyboard" in r.expression]
    assert not stored, "an overruled rule is stored with its verdict but not trained on"


def test_a_refused_login_logcheck_ignores_is_overruled_by_our_meaning_rules() -> None:
    # logcheck leaves single failed logins out of a server's report; for us they are security
    overruler = Overruler()
    verdict = overruler.verdict(r"su(\[[0-9]+\])?: pam_authenticate: Authentication failure$", [])
    assert verdict is not None and "auth-failed" in verdict
    mixed = r"dovecot: imap-login: (Disconnected \(auth failed, [0-9]+ attempts\)|Login): user=<x>"
    assert overruler.verdict(mixed, []) is not None, "one alerting branch overrules the rule"
    # a host name the filler draws (sensor-07) does not make a line a sensor reading
    assert overruler.verdict(r"proftpd\[[0-9]+\]: [a-z0-9-]+ - FTP session opened\.$",
                             ["proftpd"]) is None
    assert not any("Authentication failure" in r.expression for r in logcheck.load_rules())
