"""End to end: the real agent process, a real Mosquitto, real files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.support.agent_proc import AgentProcess, payloads, write_config
from tests.support.mqtt_client import Collector

DEV = "pump-07"
ROOT = f"nanofleet/v1/dev/{DEV}"


def file_source(path) -> str:
    return f'[[sources]]\nkind = "file"\npath = "{path}"\nstart_at = "beginning"\n'


@pytest.fixture
def agent_env(tmp_path, broker):
    log = tmp_path / "pump.log"
    log.write_text("")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.toml", DEV, state, broker.port, file_source(log))
    agent = AgentProcess(cfg, state)
    yield agent, log, broker
    agent.stop()


def result_texts(messages) -> list[str]:
    seen, out = set(), []
    for doc in payloads(messages):
        if doc["msg_id"] in seen:
            continue
        seen.add(doc["msg_id"])
        out += [item["text"] for item in doc["items"]]
    return out


def append(path, lines) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_lines_become_results_alerts_metrics_and_status(agent_env):
    agent, log, broker = agent_env
    sub = Collector(broker.port, f"{ROOT}/#")
    agent.start()
    lines = [f"kernel: eth0 link up, 1000 Mbps full duplex #{i}" for i in range(20)]
    lines.append("thermal: CPU0 temperature 104C above critical threshold, shutting down")
    append(log, lines)
    sub.wait_for(lambda ms: len(result_texts([m for m in ms if "/results/" in m.topic])) >= 21)
    res = [m for m in sub.messages if m.topic == f"{ROOT}/results/logs"]
    docs = payloads(res)
    assert all(d["device_id"] == DEV and d["msg_id"] and d["seq"] >= 1 for d in docs)
    assert [d["seq"] for d in docs] == sorted(d["seq"] for d in docs)
    assert result_texts(res) == lines
    item = docs[-1]["items"][-1]
    assert item["label"] == "thermal" and item["score"] > 0.5
    alerts = sub.wait_for(lambda ms: any(m.topic == f"{ROOT}/alerts" for m in ms))
    alert = next(json.loads(m.payload) for m in alerts if m.topic == f"{ROOT}/alerts")
    assert alert["item"]["label"] == "thermal" and "thermal" in alert["reason"]
    metrics = sub.wait_for(lambda ms: any(m.topic == f"{ROOT}/metrics" for m in ms))
    doc = next(json.loads(m.payload) for m in metrics if m.topic == f"{ROOT}/metrics")
    for key in ("lines_in", "inferences"):
        assert key in doc["counters"]
    for key in ("spool_depth", "latency_p99_ms", "queue_depth"):
        assert key in doc["gauges"]
    status = [json.loads(m.payload) for m in sub.on(f"{ROOT}/status")]
    assert status[-1]["state"] == "online" and status[-1]["models"][0]["version"] >= 1
    # What bundles it can read, for the fleet server's rollouts (contract.bundle_features).
    assert status[-1]["reads"] == ["known_programs", "level_offsets",
                                  "tokenizer.head:time-host-v1"]
    assert agent.stop() == 0
    late = Collector(broker.port, f"{ROOT}/status")  # retained
    msgs = late.wait_for(lambda ms: len(ms) >= 1)
    assert json.loads(msgs[-1].payload)["state"] == "stopped"
    sub.close()
    late.close()


def test_last_will_marks_device_offline_on_crash(agent_env):
    agent, log, broker = agent_env
    agent.start()
    agent.kill9()
    sub = Collector(broker.port, f"{ROOT}/status")
    sub.wait_for(lambda ms: any(json.loads(m.payload)["state"] == "offline" for m in ms),
                 timeout=60)
    sub.close()


def test_mosquitto_rr_request_response(agent_env):
    agent, log, broker = agent_env
    agent.start()
    append(log, ["sshd[311]: Failed password for root from 10.0.0.9 port 4122 ssh2"])

    def rr(payload: str) -> dict:
        out = subprocess.run(["mosquitto_rr", "-V", "5", "-p", str(broker.port), "-h", "127.0.0.1",
                              "-t", f"{ROOT}/query", "-e", f"{ROOT}/reply/tech", "-m", payload,
                              "-W", "20"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    st = rr('{"cmd": "status"}')
    assert st["ok"] and st["result"]["device_id"] == DEV and st["result"]["state"] == "online"
    assert rr("models")["result"][0]["slot"] == "logs"
    assert rr('{"cmd": "sources"}')["result"][0]["kind"] == "file"
    assert "counters" in rr('{"cmd": "metrics"}')["result"]
    cl = rr('{"cmd": "classify", "args": {"text": ["disk /dev/sda: I/O error, sector 1234"]}}')
    assert cl["ok"] and cl["result"][0]["label"] == "storage" and "why" not in cl["result"][0]
    why = rr('{"cmd": "classify", "args": {"text": "disk /dev/sda: I/O error, sector 1234", '
             '"explain": true}}')
    assert why["ok"], why
    words = [w["word"] for w in why["result"][0]["why"]]
    # up to five of the line's own words, strongest first (which of them leads is the
    # model's: `sector` ahead of `error` since lines' heads are dropped)
    assert 1 <= len(words) <= 5 and set(words) <= {"disk", "dev", "sda", "I", "O", "error",
                                                   "sector", "1234"}
    assert "error" in words and why["result"][0]["why"][0]["weight"] > 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = rr('{"cmd": "recent_alerts", "args": {"label": "security", "limit": 5}}')
        if got["result"]:
            break
        time.sleep(0.3)
    assert got["ok"] and got["result"][0]["item"]["label"] == "security"
    assert rr('{"cmd": "recent_alerts", "args": {"since": 9999999999}}')["result"] == []
    bad = rr("{not json")
    assert not bad["ok"] and "JSON" in bad["error"]
    assert "unknown command" in rr('{"cmd": "reboot"}')["error"]
    assert "bad arguments" in rr('{"cmd": "recent_alerts", "args": {"limit": -1}}')["error"]
    assert "bad arguments" in rr('{"cmd": "status", "args": {"x": 1}}')["error"]
    assert rr('{"cmd": "status"}')["ok"]  # still serving


def test_malformed_query_payloads_do_not_hurt(agent_env):
    agent, log, broker = agent_env
    agent.start()
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    replies = Collector(broker.port, f"{ROOT}/reply/#")
    # the fourth: a lone surrogate escape (before: no reply could be encoded, none was sent)
    # One at a time: five at once may find the agent's four query slots taken ("busy"; a
    # CI flake, December 2026).
    for i, payload in enumerate([b"\xff\xfe\x00", b"x" * 200_000, b"", b"[1,2]",
                                 b'{"cmd": "\\ud800"}']):
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{ROOT}/reply/t"
        props.CorrelationData = f"c{i}".encode()
        replies.publish(f"{ROOT}/query", payload, props=props)
        replies.wait_for(lambda ms, n=i + 1: len(ms) >= n)
    replies.publish(f"{ROOT}/query", b'{"cmd":"status"}')  # no response topic: ignored
    wild = Properties(PacketTypes.PUBLISH)
    wild.ResponseTopic = f"{ROOT}/reply/#"  # nobody can publish there: ignored, counted
    replies.publish(f"{ROOT}/query", b'{"cmd":"status"}', props=wild)
    got = replies.wait_for(lambda ms: len(ms) >= 5)
    by_corr = {m.properties.CorrelationData: json.loads(m.payload) for m in got}
    assert set(by_corr) == {b"c0", b"c1", b"c2", b"c3", b"c4"}
    assert "UTF-8" in by_corr[b"c0"]["error"]
    assert "too large" in by_corr[b"c1"]["error"]
    assert "surrogate" in by_corr[b"c4"]["error"]
    assert all(not r["ok"] for r in by_corr.values())
    assert agent.query("status")["ok"]
    # The last two queries get no reply, so the replies above can come before the agent
    # has read them: wait for their count (the metrics query goes by the local socket).
    deadline = time.monotonic() + 10
    while (errors := agent.query("metrics")["result"]["counters"]["query_errors"]) < 7 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors >= 7


def test_local_cli_query(agent_env, tmp_path):
    agent, log, broker = agent_env
    cli = [sys.executable, "-m", "agent.cli", "query", "--config", str(agent.config)]
    down = subprocess.run(cli + ["status"], capture_output=True, text=True, timeout=30)
    assert down.returncode == 3 and "not running" in down.stderr
    agent.start()
    out = subprocess.run(cli + ["status"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "device_id" in out.stdout and DEV in out.stdout and "VERSION" in out.stdout
    js = subprocess.run(cli + ["models", "--json"], capture_output=True, text=True, timeout=30)
    assert json.loads(js.stdout)["result"][0]["slot"] == "logs"
    cl = subprocess.run(cli + ["classify", "battery voltage low 3.1V, switching to backup power"],
                        capture_output=True, text=True, timeout=30)
    assert cl.returncode == 0 and "power" in cl.stdout
    ex = subprocess.run(cli + ["classify", "--explain", "Failed password for root from 10.0.0.9"],
                        capture_output=True, text=True, timeout=30)
    assert ex.returncode == 0 and "WHY" in ex.stdout and "password +" in ex.stdout, ex.stdout
    bad = subprocess.run(cli + ["nonsense"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "unknown command" in bad.stderr
    mode = agent.socket.stat().st_mode & 0o777
    assert mode == 0o660


def test_kill9_and_restart_lose_and_repeat_nothing(agent_env):
    agent, log, broker = agent_env
    sub = Collector(broker.port, f"{ROOT}/results/#")
    agent.start()
    lines = [f"sensor t{i} temp=21.{i % 10}C humidity=40%" for i in range(3000)]
    append(log, lines[:1500])
    sub.wait_for(lambda ms: len(result_texts(ms)) >= 200, timeout=30)
    agent.kill9()
    append(log, lines[1500:])
    agent.start()
    sub.wait_for(lambda ms: len(result_texts(ms)) >= 3000, timeout=60)
    time.sleep(1.0)
    assert result_texts(sub.messages) == lines  # each line once, in order (dups by msg_id)
    sub.close()


def test_sighup_reload_keeps_queued_lines_and_rejects_bad_config(agent_env):
    agent, log, broker = agent_env
    sub = Collector(broker.port, f"{ROOT}/results/#")
    agent.start()
    lines = [f"app[9]: request {i} served in 12ms" for i in range(2000)]
    append(log, lines[:1000])
    agent.signal(signal.SIGHUP)
    append(log, lines[1000:])
    sub.wait_for(lambda ms: len(result_texts(ms)) >= 2000, timeout=60)
    assert result_texts(sub.messages) == lines

    def counter(name: str) -> int:
        return int(agent.query("metrics")["result"]["counters"].get(name, 0))

    deadline = time.monotonic() + 20
    while counter("reloads") < 1:  # the first reload is done before the config changes
        assert time.monotonic() < deadline
        time.sleep(0.1)
    original = agent.config.read_text()
    agent.config.write_text(original + "\nbogus = 1\n")
    agent.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while counter("reload_errors") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert agent.query("status")["ok"]
    assert counter("reloads") == 1
    sub.close()


def test_the_last_will_names_its_connection_so_replicas_order_it(tmp_path, broker):
    """An agent that reconnects before the broker noticed the old connection was gone gets
    the old connection's Will sent just before its new online status; with two replicas the
    Will could be stamped later and win (docs/scaling.md). Each status and each Will name
    their connection, so the fleet server orders a Will after its own connection and before
    the next one, whatever the arrival order. Real agent, real Mosquitto, a relay that
    resets the connection, a reload that builds a new link."""
    from contract.messages import Status
    from fleet_server.db import Device
    from fleet_server.inventory import apply_status
    from hil.links import ProxyLink

    relay = ProxyLink(broker.port)
    log = tmp_path / "pump.log"
    log.write_text("")
    state = tmp_path / "state"
    cfg = tmp_path / "agent.toml"
    write_config(cfg, DEV, state, relay.device_port, file_source(log))
    agent = AgentProcess(cfg, state)
    sub = Collector(broker.port, f"{ROOT}/status")

    def statuses(messages):
        return [Status.model_validate_json(m.payload) for m in messages
                if m.topic == f"{ROOT}/status"]

    def wait_status(state_: str, connection: int):
        def match(messages):
            return [s for s in statuses(messages)
                    if s.state == state_ and s.connection == connection]
        return match(sub.wait_for(lambda ms: bool(match(ms)), timeout=30))[0]

    try:
        agent.start()
        first = wait_status("online", 1)
        relay.drop()  # the broker sees the socket close and sends connection 1's Will
        will1 = wait_status("offline", 1)
        second = wait_status("online", 2)
        assert will1.started_at == first.started_at == second.started_at
        # A reload that changes [mqtt] builds a new link: its numbering goes on.
        write_config(cfg, DEV, state, relay.device_port, file_source(log),
                     mqtt_extra="keepalive_s = 20")
        agent.signal(signal.SIGHUP)
        third = wait_status("online", 3)
        relay.drop()
        will3 = wait_status("offline", 3)
        wait_status("online", 4)
        assert agent.query("status")["result"]["connection"] == 4

        # The fleet server, fed in the worst order a busy replica could stamp them in.
        device = Device(device_id=DEV, models=[], metrics={}, tags=[], state="unknown",
                        agent_version="", health="unknown")
        apply_status(device, first, 100.0)
        apply_status(device, second, 100.1)
        apply_status(device, will1, 100.2)  # connection 1's Will, stamped late
        assert device.state == "online" and device.last_status_connection == 2
        apply_status(device, third, 100.3)
        apply_status(device, will3, 100.4)
        assert device.state == "offline"
        apply_status(device, second, 100.5)  # a late status of an older connection
        assert device.state == "offline"
    finally:
        agent.stop()
        sub.close()
        relay.close()
