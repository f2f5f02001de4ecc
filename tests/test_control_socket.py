"""Attacks on the agent's local control socket by someone who may connect to it (a
technician in the agent's group, or any local process under that group), against the
real agent daemon. One test case per attack."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.control import BUSY, MAX_CONNECTIONS, READ_DEADLINE_S, QueryFailed, ask
from agent.queries import MAX_ALERTS_ANSWER_BYTES, answer
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.mosquitto import free_port


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def many_idle_connections_do_not_exhaust_threads(agent: AgentProcess) -> None:
    """100 connections that never send a line (before: 100 threads, over TasksMax=64,
    and the agent's own threads could no longer start)."""
    assert agent.proc is not None
    before = threads_of(agent.proc.pid)
    held = [connect(agent.socket) for _ in range(100)]
    try:
        time.sleep(1.0)
        during = threads_of(agent.proc.pid)
        assert during <= before + MAX_CONNECTIONS + 1, (before, during)
        assert agent.query("status")["ok"] in (True, False)  # answered ("busy" at worst)
        time.sleep(READ_DEADLINE_S + 1)  # the idle ones are dropped after the deadline
        assert agent.query("status")["ok"] is True
        # those beyond the handlers were answered "busy", and counted
        counters = agent.query("metrics")["result"]["counters"]
        assert counters.get("control_busy", 0) >= 100 - MAX_CONNECTIONS - 1, counters
    finally:
        for s in held:
            s.close()


def a_byte_at_a_time_does_not_hold_a_handler(agent: AgentProcess) -> None:
    """A client that sends one byte a second, never a full line (before: each byte reset
    a 10 s timeout, so the handler lived for ever): closed after the deadline."""
    s = connect(agent.socket)
    try:
        s.settimeout(0.5)
        t0 = time.monotonic()
        closed_after = None
        while time.monotonic() - t0 < READ_DEADLINE_S + 5:
            try:
                s.send(b"{")
            except OSError:
                closed_after = time.monotonic() - t0
                break
            try:
                if s.recv(100) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except TimeoutError:
                time.sleep(0.5)
        assert closed_after is not None and closed_after < READ_DEADLINE_S + 2, closed_after
    finally:
        s.close()
    assert agent.query("status")["ok"] is True


def a_query_that_cannot_be_answered_in_unicode_is_refused(agent: AgentProcess) -> None:
    """A query escaping a lone UTF-16 surrogate (before: parsed, then the answer could not
    be encoded: the caller got nothing, a traceback went to stderr, nothing was counted).
    Refused with an answer naming why; the agent answers the next query."""
    for payload in (b'{"cmd": "\\ud800"}', b'{"cmd": "classify", "text": "a\\udc00"}'):
        s = connect(agent.socket)
        try:
            s.settimeout(10)
            s.sendall(payload + b"\n")
            reply = json.loads(s.recv(65536).split(b"\n")[0])
        finally:
            s.close()
        assert reply["ok"] is False and "surrogate" in reply["error"], reply
    assert agent.query("status")["ok"] is True


def raw_query(agent: AgentProcess, payload: bytes, shut: bool = False) -> dict[str, object]:
    s = connect(agent.socket)
    try:
        s.settimeout(10)
        s.sendall(payload)
        if shut:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    reply: dict[str, object] = json.loads(data)
    return reply


def a_request_that_ends_with_the_connection_is_answered(agent: AgentProcess) -> None:
    """``printf '{"cmd":"status"}' | nc -UN``: no newline, then the write side closed
    (before: no answer at all)."""
    assert raw_query(agent, b'{"cmd": "status"}', shut=True)["ok"] is True


def a_thousand_bad_items_get_a_short_error(agent: AgentProcess) -> None:
    """One error per bad item made a 64 KiB request a 1.7 MB answer (review, December
    2026); a long unknown command was echoed whole."""
    payload = json.dumps({"cmd": "classify", "args": {"text": [1] * 20_000}}).encode()
    reply = raw_query(agent, payload + b"\n")
    assert reply["ok"] is False and "more" in str(reply["error"])
    assert len(json.dumps(reply)) < 2000, len(json.dumps(reply))
    reply = raw_query(agent, json.dumps({"cmd": "x" * 50_000}).encode() + b"\n")
    assert reply["ok"] is False and len(json.dumps(reply)) < 2000


def status_queries_use_no_sequence_numbers(agent: AgentProcess) -> None:
    """Each status query took a stored, bounded sequence number of the status stream
    (review, December 2026: a query loop would have used them up in two weeks)."""
    first = agent.query("status")["result"]["seq"]
    for _ in range(20):
        agent.query("status")
    assert agent.query("status")["result"]["seq"] == first


ATTACKS: dict[str, Callable[[AgentProcess], None]] = {
    f.__name__: f for f in (many_idle_connections_do_not_exhaust_threads,
                            a_byte_at_a_time_does_not_hold_a_handler,
                            a_query_that_cannot_be_answered_in_unicode_is_refused,
                            a_request_that_ends_with_the_connection_is_answered,
                            a_thousand_bad_items_get_a_short_error,
                            status_queries_use_no_sequence_numbers)}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    tmp = tmp_path_factory.mktemp("control")
    log = tmp / "pump.log"
    log.write_text("")
    state = tmp / "state"
    config = write_config(tmp / "agent.toml", "pump-07", state, free_port(),
                          f'[[sources]]\nkind = "file"\npath = "{log}"\n')
    proc = AgentProcess(config, state).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_control_socket_attack(attack: str, agent: AgentProcess) -> None:
    ATTACKS[attack](agent)


@contextlib.contextmanager
def fake_agent(path: Path, serve: Callable[[socket.socket], None]) -> Iterator[None]:
    """A socket at ``path`` whose first connection ``serve`` answers, in a thread."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                serve(conn)

        t = threading.Thread(target=accept)
        t.start()
        try:
            yield
        finally:
            t.join(10)


def test_a_busy_answer_sent_before_the_query_is_out_still_reaches_the_cli(tmp_path: Path) -> None:
    """A busy agent answers and closes at once; a query not yet written (here one larger
    than the socket's buffer, so the close always comes first) met a broken pipe and the
    CLI died with a traceback (CI saw it with 100 idle connections held)."""
    path = tmp_path / "agent.sock"
    with fake_agent(path, lambda conn: conn.send(BUSY.model_dump_json().encode() + b"\n")):
        reply = ask(path, "status", {"pad": "x" * 4_000_000})
    assert reply == json.loads(BUSY.model_dump_json())


@pytest.mark.parametrize("answer, message", [
    (None, "did not answer within 1 s"),
    (b'{"ok": true, "res', "cut off or is not JSON"),
    (b"hello\n", "cut off or is not JSON")])
def test_the_cli_says_what_went_wrong_without_a_traceback(
        tmp_path: Path, answer: bytes | None, message: str) -> None:
    """Review, December 2026: an agent that never answers, or whose answer was cut, gave
    the technician a TimeoutError or JSONDecodeError traceback."""
    def serve(conn: socket.socket) -> None:
        conn.recv(65536)
        if answer is None:
            time.sleep(2.0)
        else:
            conn.sendall(answer)

    with fake_agent(tmp_path / "a.sock", serve), pytest.raises(QueryFailed, match=message):
        ask(tmp_path / "a.sock", "status", {}, timeout=1.0)
    if answer is not None:  # the CLI prints it and exits 4
        with fake_agent(tmp_path / "b.sock", serve):
            out = subprocess.run([sys.executable, "-m", "agent.cli", "query", "--socket",
                                  str(tmp_path / "b.sock"), "status"], capture_output=True,
                                 text=True, timeout=60)
        assert out.returncode == 4 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_text_and_bare_words_make_one_list_of_lines(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []

    def serve(conn: socket.socket) -> None:
        seen.append(json.loads(conn.recv(65536).split(b"\n")[0]))
        conn.sendall(b'{"ok": false, "error": "test"}\n')

    with fake_agent(tmp_path / "agent.sock", serve):
        out = subprocess.run([sys.executable, "-m", "agent.cli", "query", "--socket",
                              str(tmp_path / "agent.sock"), "classify", "text=foo", "bar"],
                             capture_output=True, text=True, timeout=60)
    assert "Traceback" not in out.stderr, out.stderr
    assert seen == [{"cmd": "classify", "args": {"text": ["foo", "bar"]}}]


def test_recent_alerts_answers_the_newest_that_fit_its_budget() -> None:
    """1,000 alerts of long lines were a 25 MB answer, eight at once past the unit's
    MemoryMax (review, December 2026): the newest that fit 256 KiB, in their order."""
    alerts = [{"ts": float(i), "item": {"label": "security", "text": "\x01" * 4000 + str(i)}}
              for i in range(1000)]
    target = SimpleNamespace(recent_alerts=lambda: alerts)
    reply = answer(target, json.dumps({"cmd": "recent_alerts",  # type: ignore[arg-type]
                                       "args": {"limit": 1000}}).encode())
    data = reply.model_dump_json()
    assert reply.ok and MAX_ALERTS_ANSWER_BYTES // 2 < len(data) <= MAX_ALERTS_ANSWER_BYTES + 4096
    got = reply.result
    assert isinstance(got, list) and 0 < len(got) < 1000
    assert [a["ts"] for a in got] == [float(i) for i in range(1000 - len(got), 1000)]
    # One alert larger than the budget on its own is still answered.
    alerts[:] = [{"ts": 1.0, "item": {"label": "security", "text": "\x01" * 60_000}}]
    reply = answer(target, b'{"cmd": "recent_alerts"}')  # type: ignore[arg-type]
    assert reply.ok and len(reply.result) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try as another user")
def test_a_socket_in_a_private_directory_gets_the_right_hint(tmp_path: Path) -> None:
    """The default socket sits in the agent's 0700 state directory, where joining the
    group does not help; the hint said it would (review, December 2026)."""
    private = tmp_path / "state"
    private.mkdir(mode=0o700)
    tmp_path.chmod(0o755)
    path = private / "agent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-m", "agent.cli", "query", "--socket", str(path), "status"],
            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 3, out.stderr
    assert f"permission denied on the directory {private}" in out.stderr
    assert "[control] socket" in out.stderr
