"""The classic-server capture (FTP from inetd, su/sudo/login, logrotate): what its clients
are told to do, how its lines are labelled, and the committed lines it produced
(nanomodel/harvest/scenarios_classic.py, ftp_client.py, capture_io.py)."""

from __future__ import annotations

import random
from collections import Counter

from nanomodel import realtext
from nanomodel.harvest import ftp_client
from nanomodel.harvest.capture_io import SCENARIO_HOST, captured_rows
from nanomodel.harvest.scenarios_classic import logrotate_state, tty_plan

OURS = f"Dec  3 13:20:41 {SCENARIO_HOST}"
MACHINE = "Dec  3 13:20:41 vm"
ROUTINE_FTP = {"anonymous", "upload", "browse"}


def _rows(*lines: str) -> list[dict[str, str]]:
    return captured_rows("\n".join(lines))


def _is_trouble(session: dict[str, object]) -> bool:
    """A session that ends in a refusal: a wrong password, an unknown name, not in sudoers."""
    script = session["script"]
    assert isinstance(script, list)
    typed = [send for _, send in script]
    wrong = ("r00t\n", "admin\n", "Deploy2026\n", "Depl0y-2026\n")
    return session["user"] == "intern" or any(t in wrong for t in typed)


def test_terminal_sessions_are_mostly_routine_and_the_trouble_is_all_there() -> None:
    plan = tty_plan(random.Random(1977), 400)
    assert plan == tty_plan(random.Random(1977), 400)  # seeded: a capture run repeats
    programs = {p for s in plan for p in s["argv"] if p in ("su", "sudo", "login")}  # type: ignore[attr-defined]
    assert programs == {"su", "sudo", "login"}
    trouble = sum(_is_trouble(s) for s in plan)
    assert 0.1 * len(plan) < trouble < 0.3 * len(plan)
    # every kind of trouble the scenario promises shows up
    wanted = {
        "failed su": lambda s: s["argv"][0] == "su" and _is_trouble(s),
        "not in sudoers": lambda s: s["argv"][0] == "sudo" and s["user"] == "intern",
        "three wrong sudo passwords": lambda s: s["argv"][0] == "sudo" and len(s["script"]) == 3,
        "unknown login name": lambda s: any(send == "admin\n" for _, send in s["script"]),
    }
    for name, pick in wanted.items():
        assert any(pick(s) for s in plan), name
    # a root su to a service user asks nothing; a user's su to root types a password
    for s in plan:
        if "su" in s["argv"]:  # type: ignore[operator]
            assert (s["uid"] == 0) == (s["script"] == [])


def test_ftp_sessions_are_mostly_routine_and_end_with_the_idle_client() -> None:
    hosts = [f"10.77.0.{i}" for i in range(10, 20)]
    plan = ftp_client.plan(150, 21, hosts)
    assert plan == ftp_client.plan(150, 21, hosts)
    kinds = Counter(kind for kind, _ in plan)
    assert sum(kinds[k] for k in ROUTINE_FTP) > 0.6 * len(plan)
    assert plan[-1][0] == "idle" and kinds["idle"] == 1
    assert {"typo", "unknown", "root", "portscan", "guesser"} <= set(kinds)
    assert {src for _, src in plan} <= set(hosts)


def test_logrotate_state_says_when_each_log_was_last_rotated() -> None:
    text = logrotate_state(["/var/log/messages", "/var/log/secure"], "2026-11-28")
    assert text.splitlines() == [
        "logrotate state -- version 2",
        '"/var/log/messages" 2026-11-28-4:0:0',
        '"/var/log/secure" 2026-11-28-4:0:0',
    ]


def test_classic_lines_are_labelled_under_their_sources() -> None:
    rows = _rows(
        f"{OURS} ftp.info ftpd[5612]: connection from 10.77.0.33",
        f"{OURS} daemon.info ftpd[5612]: connect from 10.77.0.33 (10.77.0.33)",
        f"{OURS} ftp.info ftpd[5612]: ANONYMOUS FTP LOGIN FROM 10.77.0.33",
        f"{OURS} authpriv.err ftpd[5700]: pam_ftp(ftp:auth): conversation failed",
        f"{OURS} ftp.notice ftpd[5700]: FTP LOGIN FAILED FROM 10.77.0.40, admin",
        f"{OURS} auth.notice su[812]: (to root) deploy on pts/0",
        f"{OURS} auth.notice su[813]: FAILED SU (to root) deploy on pts/0",
        f"{OURS} authpriv.alert sudo:   intern : user NOT in sudoers ; TTY=pts/0 ; "
        "PWD=/home/intern ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow",
        f"{OURS} user.notice logrotate: ALERT exited abnormally with [1]",
        f"{OURS} user.notice logrotate: error: stat of /var/log/app/worker.log failed: "
        "No such file or directory",
    )
    assert [(r["source"], r["label"]) for r in rows] == [
        ("ftpd", "normal"),
        ("ftpd", "normal"),
        ("ftpd", "normal"),
        ("pam", "normal"),
        ("ftpd", "security"),
        ("util-linux", "normal"),
        ("util-linux", "security"),
        ("sudo", "security"),
        ("logrotate", "software"),
        ("logrotate", "software"),
    ]
    # logrotate's "error: " is its own stamp: the message under it reaches its template
    assert rows[-1]["reason"].startswith("template logrotate.c:")


def test_this_machines_own_su_and_sudo_are_not_taken_for_the_scenarios() -> None:
    """Other work on the machine su's to the agent's user while a capture owns /dev/log."""
    rows = _rows(
        f"{MACHINE} auth.notice su[11293]: (to nanofleet) root on none",
        f"{MACHINE} authpriv.info su[11293]: pam_unix(su:session): session opened for user "
        "nanofleet(uid=994) by (uid=0)",
        f"{OURS} auth.notice su[812]: (to root) deploy on pts/0",
        f"{MACHINE} authpriv.info sshd[700]: pam_unix(sshd:session): session closed for user x",
    )
    assert [r["text"].split("[")[0] for r in rows] == ["su", "sshd"]


def test_committed_classic_captures_have_routine_majorities_and_reviewed_trouble() -> None:
    lines = realtext.load_captured(["ftpd", "util-linux", "sudo", "logrotate"])
    per: dict[str, Counter[str]] = {}
    for c in lines:
        per.setdefault(c.source, Counter())[c.label] += 1
    assert per["ftpd"].total() >= 200 and per["ftpd"]["normal"] > 0.6 * per["ftpd"].total()
    assert per["ftpd"]["security"] > 0
    for source in ("util-linux", "sudo"):
        assert per[source]["normal"] > per[source]["security"] > 0, source
    # a broken logrotate configuration is the software's trouble, by review
    broken = [c for c in lines if c.source == "logrotate" and "unknown option" in c.text]
    assert broken and all(c.label == "software" for c in broken)
    assert all(c.label == "software" for c in lines if "ALERT exited abnormally" in c.text)
    # su/login sessions, sudo's and FTP's PAM lines land in pam, routine ones normal
    pam = [c for c in realtext.load_captured(["pam"]) if c.text.startswith(("su", "sudo", "ftpd"))]
    assert any("session opened" in c.text and c.label == "normal" for c in pam)
