"""Attacks on the agent's local control socket by someone who may connect to it (a
technician in the agent's group, or any local process under that group), against the
real agent daemon. One test case per attack."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.control import BUSY, MAX_CONNECTIONS, READ_DEADLINE_S, ask
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


ATTACKS: dict[str, Callable[[AgentProcess], None]] = {
    f.__name__: f for f in (many_idle_connections_do_not_exhaust_threads,
                            a_byte_at_a_time_does_not_hold_a_handler,
                            a_query_that_cannot_be_answered_in_unicode_is_refused)}


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


def test_a_busy_answer_sent_before_the_query_is_out_still_reaches_the_cli(tmp_path: Path) -> None:
    """A busy agent answers and closes at once; a query not yet written (here one larger
    than the socket's buffer, so the close always comes first) met a broken pipe and the
    CLI died with a traceback (CI saw it with 100 idle connections held)."""
    path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()

        def answer_busy() -> None:
            conn, _ = server.accept()
            conn.send(BUSY.model_dump_json().encode() + b"\n")
            conn.close()

        t = threading.Thread(target=answer_busy)
        t.start()
        reply = ask(path, "status", {"pad": "x" * 4_000_000})
        t.join()
    assert reply == json.loads(BUSY.model_dump_json())
