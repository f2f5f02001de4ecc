# ruff: noqa: E501  (the fixtures are log lines as fail2ban ships them, longer than 100)
"""fail2ban's test logs as a public sample: harvested from a real git repository made here,
labelled as documented (LABELLING.md, "Public log samples (fail2ban)"), loaded as logged."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from nanomodel import realtext
from nanomodel.harvest import samples_fail2ban as f2b
from tests.support.realdata import own_data_folder, reread_lines

SSHD = """\
# filterOptions: [{}, {"mode": "aggressive"}]
# failJSON: { "time": "2005-02-25T14:34:10", "match": true , "host": "192.0.2.1" }
Feb 25 14:34:10 belka sshd[31602]: Failed password for invalid user ROOT from 192.0.2.1 port 50273 ssh2
# failJSON: { "match": false }
Mar  7 18:53:20 bar sshd[1556]: Accepted password for rda from 192.0.2.113 port 52100 ssh2

Oct 15 19:51:35 server sshd[7592]: Address 1.2.3.4 maps to x.example, but this does not map back to the address - POSSIBLE BREAK-IN ATTEMPT
# failJSON: { "time": "2005-03-15T09:21:01", "match": true , "host": "192.0.2.212", "desc": "ddos" }
Mar 15 09:21:01 host sshd[2717]: Connection closed by 192.0.2.212 [preauth]
# failJSON: { "match": true , "host": "192.0.2.9" }
Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for root from 192.0.2.9 port 1 ssh2
# failJSON: { "time": "2004-11-11T08:04:51", "match": true , "host": "127.0.0.1", "desc": "Injecting on username ssh 'from 10.10.1.1'@localhost" }
Nov 11 08:04:51 redbamboo sshd[2737]: Failed password for invalid user from 10.10.1.1 from 127.0.0.1 port 58946 ssh2
"""
# the same failed password as the journal backend shows it: one row for both
SSHD_JOURNAL = """\
# failJSON: { "match": true , "host": "192.0.2.1" }
srv sshd[31602]: Failed password for invalid user ROOT from 192.0.2.1 port 50273 ssh2
"""
DOVECOT = """\
# failJSON: { "match": true , "host": "192.0.2.241" }
Jun 12 19:07:29 hostname dovecot[241]: imap-login: Login aborted: Connection closed (auth failed, 3 attempts in 16 secs) (auth_failed): user=<test>, method=PLAIN, rip=192.0.2.241, lip=203.0.113.104
# failJSON: { "match": false , "desc": "GHSA-33wh-ccjc-p397, negative case (bypass, no hangs)" }
Aug 31 16:06:06 s166 dovecot: imap-login: Disconnected: a: a: a: a: a: a: a: a: a: a: a: a: test no match
"""
ROUNDCUBE = """\
# failJSON: { "match": true , "host": "192.0.43.10" }
[22-Jan-2013 22:28:21 +0200]: FAILED login for user1 from 192.0.43.10
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    """A real git repository holding fail2ban's layout; returns its git directory."""
    repo = tmp_path / "fail2ban"
    logs = repo / "fail2ban" / "tests" / "files" / "logs"
    (logs / "bsd").mkdir(parents=True)
    (logs / "bsd" / "syslog-plain.txt").write_text("Apr  2 17:52:55 pancake sshd[1]: x\n")
    for name, text in files.items():
        (logs / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "logs")
    return repo / ".git"


def _rows(folder: Path) -> dict[str, dict[str, str]]:
    return {json.loads(line)["text"]: json.loads(line)
            for path in folder.glob("*.jsonl") for line in path.read_text().splitlines()}


def test_the_harvester_labels_banned_unbanned_and_unannotated_lines(tmp_path: Path) -> None:
    git_dir = _repo(tmp_path, {"sshd": SSHD, "sshd-journal": SSHD_JOURNAL,
                               "dovecot": DOVECOT, "roundcube-auth": ROUNDCUBE})
    out = tmp_path / "samples"
    assert f2b.main([str(git_dir), "--out", str(out), "--counts", str(tmp_path / "C.md")]) == 0
    commit = _git(git_dir, "rev-parse", "HEAD").strip()
    rows = _rows(out)
    assert sorted(p.stem for p in out.glob("*.jsonl")) == ["dovecot", "openssh"]
    for row in rows.values():
        assert set(row) == {"source", "text", "label", "reason", "template_origin", "how",
                            "level"}
        assert row["label"] in realtext.LABELS and row["reason"]
        assert row["how"].endswith(f"({commit[:8]})")
    failed = rows["Feb 25 14:34:10 belka sshd[31602]: Failed password for invalid user ROOT "
                  "from 192.0.2.1 port 50273 ssh2"]
    assert failed["label"] == "security" and failed["template_origin"] == ""
    assert failed["reason"] == "fail2ban's sshd filter bans on it: a failed login"
    assert failed["how"].startswith("fail2ban tests/files/logs/sshd:3 ")
    # match false: the source's template decides, and names itself for later reviews
    accepted = rows["Mar  7 18:53:20 bar sshd[1556]: Accepted password for rda from "
                    "192.0.2.113 port 52100 ssh2"]
    assert accepted["label"] == "normal" and accepted["template_origin"].startswith("auth")
    assert accepted["reason"].startswith("template ")
    # no annotation, no template: a reviewed decision, with its reason
    [dns] = [r for t, r in rows.items() if "POSSIBLE BREAK-IN ATTEMPT" in t]
    assert dns["label"] == "normal" and dns["reason"].startswith("review: ")
    # banned by fail2ban's ddos mode, routine by the project's SSH decisions
    closed = rows["Mar 15 09:21:01 host sshd[2717]: Connection closed by 192.0.2.212 [preauth]"]
    assert closed["label"] == "normal" and "bans on it, but review: " in closed["reason"]
    # a new source without templates: fail2ban's ban stands
    [auth] = [r for r in rows.values() if r["source"] == "dovecot"]
    assert auth["label"] == "security"
    # left out: loghub's host, an injection test, the ReDoS filler, a web app's log, and
    # the journal copy of a line already kept
    assert not [t for t in rows if "LabSZ" in t or "a: a: a:" in t or "FAILED login" in t]
    assert not [t for t in rows if "from 10.10.1.1 from" in t or t.startswith("srv ")]
    assert len(rows) == 5


def test_the_tally_counts_what_was_left_out_and_how_labels_were_decided() -> None:
    rows, tally = f2b.sample_rows({"sshd": SSHD, "dovecot": DOVECOT,
                                   "roundcube-auth": ROUNDCUBE}, "0123abcd")
    assert tally.read == 9 and len(rows) == 5
    assert tally.skipped["host LabSZ (loghub's SSH/Linux logs)"] == 1
    assert sum(n for why, n in tally.skipped.items() if why.startswith("parser exercise")) == 2
    assert tally.skipped["filter roundcube-auth: not a daemon's log (web application, "
                         "example)"] == 1
    assert tally.decided == {"match-true": 2, "match-true-reviewed": 1, "template": 1,
                             "review": 1}


def test_a_line_nobody_decided_is_an_error_naming_it() -> None:
    undecided = "# failJSON: { \"match\": false }\nMar  1 10:00:00 h slapd[1]: conn=1 op=9 WHAT\n"
    with pytest.raises(ValueError, match=r"(?s)1 lines .*slapd:2: .*op=9 WHAT"):
        f2b.sample_rows({"slapd": undecided}, "0123abcd")


def test_the_committed_samples_load_validated_and_are_never_training_text() -> None:
    samples = realtext.load_samples()
    assert len(samples) >= 800 and all(c.as_logged for c in samples)
    assert {c.label for c in samples} <= set(realtext.LABELS)
    assert {"security", "normal"} <= {c.label for c in samples}
    assert all(c.how.startswith("fail2ban tests/files/logs/") for c in samples)
    assert not [c for c in samples if " LabSZ " in c.text or " combo " in c.text]
    assert {c.source for c in realtext.load_samples(["dovecot"])} == {"dovecot"}
    # an evaluation of other people's logs: no sample line is a training line, whatever
    # the sources asked for, and sample-only sources are not training sources
    assert not [c for c in realtext.load_captured() if c.as_logged]
    assert "dovecot" not in realtext.sources()
    lines = realtext.real_lines(random.Random(3), per_template=1,
                                sources=["openssh", "asterisk", "dovecot"])
    texts = {t for t, _, _ in lines}
    ssh = [c.text for c in samples if c.source == "openssh"]
    assert ssh and not [t for t in ssh if t in texts]
    assert not [t for t, _, s in lines if s in ("asterisk", "dovecot")]


def test_the_loader_refuses_a_sample_with_a_bad_label_and_follows_reviews(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "samples").mkdir()
    row = {"source": "cron", "text": "Dec  3 10:00:01 gw CRON[88]: (root) INSECURE MODE "
           "(group/other writable) (/etc/crontab)", "label": "normal",
           "reason": "template database.c:426 (...): level", "template_origin": "database.c:426",
           "how": "fail2ban tests/files/logs/x:1 (0123abcd)", "level": "info"}
    (tmp_path / "samples" / "cron.jsonl").write_text(json.dumps(row) + "\n")
    with own_data_folder(tmp_path, monkeypatch):
        [line] = realtext.load_samples(["cron"])
        # the template was reviewed to security after the row was written: the review wins
        assert line.as_logged and line.label == "security" and "review:" in line.reason
        (tmp_path / "samples" / "cron.jsonl").write_text(
            json.dumps(dict(row, label="alarming")) + "\n")
        reread_lines()
        with pytest.raises(ValueError, match=r"samples/cron\.jsonl:1: label 'alarming'"):
            realtext.load_samples(["cron"])


def test_counts_md_keeps_the_sample_section_when_either_harvester_rewrites_it(
    tmp_path: Path,
) -> None:
    from nanomodel.harvest.run import write_summary

    counts = tmp_path / "COUNTS.md"
    write_summary(counts, [("openssh", "openssh 1:9.2p1", 10, 5, {"normal": 5})])
    rows, tally = f2b.sample_rows({"sshd": SSHD}, "0123abcd")
    f2b.write_counts(counts, f2b.counts_section(rows, tally, "0123abcd" * 5))
    f2b.write_counts(counts, f2b.counts_section(rows, tally, "0123abcd" * 5))  # replaced
    write_summary(counts, [("openssh", "openssh 1:9.2p1", 12, 6, {"normal": 6})])
    text = counts.read_text()
    assert text.count(f2b.COUNTS_HEADING) == 1
    assert "| openssh | openssh 1:9.2p1 | 12 | 6 | 6 |" in text
    assert "| openssh | sshd | 4 | 3 | 1 | 0 | 1 | 1 | 1 | 1 |" in text
    assert "(LabSZ, combo): 1" in text
