"""The ZooKeeper capture: its pure parts (configuration, client scripts, wire bytes) and
how its log4j lines are cut and labelled (nanomodel/harvest/scenarios_zookeeper.py,
capture_io.py, overrides.py)."""

from __future__ import annotations

import json
import random
import struct
from collections import Counter

from nanomodel.harvest.capture_io import DATA, captured_rows, message_body
from nanomodel.harvest.scenarios import ALL
from nanomodel.harvest.scenarios_zookeeper import (
    HOSTS,
    connect_request,
    mode_of,
    session_script,
    zoo_cfg,
    zookeeper,
)

# Lines as this capture's syslog file holds them (ZooKeeper's console via logger)
HEAD = "Dec  3 13:40:12 vm user.notice"
FOLLOWER_LOST = (
    f"{HEAD} zookeeper[3]: 2026-12-03 13:40:12,679 - ERROR [LearnerHandler-/10.77.0.1:47998:"
    "LearnerHandler@719] - Unexpected exception in LearnerHandler: "
)
CLIENT_GONE = (
    f"{HEAD} zookeeper[2]: 2026-12-03 13:40:12,851 - WARN  [NIOWorkerThread-2:NIOServerCnxn@374]"
    " - Unexpected exception"
)
ITS_EXCEPTION = (
    f"{HEAD} zookeeper[2]: EndOfStreamException: Unable to read additional data from client, "
    "it probably closed the socket: address = /10.77.0.2:52614, session = 0x100014aa7630001"
)
A_FRAME = f"{HEAD} zookeeper[2]: #011at org.apache.zookeeper.server.NIOServerCnxn.doIO(x:336)"


def test_each_server_gets_the_ensemble_and_its_own_address() -> None:
    cfgs = [zoo_cfg(HOSTS, myid) for myid in (1, 2, 3)]
    for myid, cfg in enumerate(cfgs, 1):
        keys = [line.split("=", 1)[0] for line in cfg.splitlines()]
        assert len(keys) == len(set(keys)), "a key set twice"
        settings = dict(line.split("=", 1) for line in cfg.splitlines())
        assert settings["clientPortAddress"] == HOSTS[myid - 1]
        assert settings["dataDir"] == "/var/lib/zookeeper"  # as packaged, bound per server
        assert [settings[f"server.{i}"] for i in (1, 2, 3)] == [f"{h}:2888:3888" for h in HOSTS]
    assert cfgs[0] != cfgs[1]


def test_role_is_read_from_the_srvr_answer() -> None:
    srvr = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/1.2/9\nZxid: 0x3\nMode: follower\n"
    assert mode_of(srvr) == "follower"
    assert mode_of("") == ""  # a server that is down answers nothing


def test_client_sessions_are_seeded_and_end_by_closing() -> None:
    rng, rng2 = random.Random(4), random.Random(4)
    first = [session_script(rng, n) for n in range(30)]
    again = [session_script(rng2, n) for n in range(30)]
    assert first == again
    assert all(cmds[-1] == "quit" for cmds in first)
    verbs = Counter(cmd.split()[0] for cmds in first for cmd in cmds)
    assert {"get", "create", "ls", "set"} <= set(verbs)


def test_connect_request_is_one_length_prefixed_record() -> None:
    raw = connect_request(0x7FFFFFFF00000000, timeout_ms=6000)
    (length,) = struct.unpack(">i", raw[:4])
    assert length == len(raw) - 4
    proto, zxid, timeout, session = struct.unpack(">iqiq", raw[4:28])
    assert (proto, zxid, timeout, session) == (0, 0x7FFFFFFF00000000, 6000, 0)


def test_scenario_is_registered() -> None:
    assert ALL["9-zookeeper"] is zookeeper


def test_log4j_prefix_is_cut_in_both_layouts() -> None:
    debian = (
        "2026-12-03 13:18:41,718 - INFO  [QuorumPeer[myid=1](plain=10.77.0.5:2181)"
        "(secure=disabled):FastLeaderElection@996] - Notification time out: 400 ms"
    )
    assert message_body("zookeeper", debian) == "Notification time out: 400 ms"
    upstream = (
        "2026-12-03 13:18:41,718 [myid:1] - WARN  [QuorumConnectionThread-[myid=1]-2:"
        "QuorumCnxManager@401] - Cannot open channel to 3 at election address /10.77.0.7:3888"
    )
    assert message_body("zookeeper", upstream).startswith("Cannot open channel to 3 at")


def test_zookeeper_rows_keep_the_log4j_line_and_its_level() -> None:
    rows = captured_rows("\n".join([FOLLOWER_LOST, CLIENT_GONE, ITS_EXCEPTION, A_FRAME]))
    # the exception text and the stack frames belong to the event line before them
    assert [r["source"] for r in rows] == ["zookeeper", "zookeeper"]
    assert rows[1]["text"].startswith("2026-12-03 13:40:12,851 - WARN  [NIOWorkerThread-2:")
    assert [r["level"] for r in rows] == ["error", "warning"]
    assert rows[0]["label"] == "network"  # the leader lost a follower
    assert rows[1]["label"] == "normal"  # a client went away without closing its session


def test_election_waits_are_routine_until_they_last() -> None:
    def line(ms: int) -> str:
        return (
            f"{HEAD} zookeeper[1]: 2026-12-03 13:40:12,000 - INFO  [QuorumPeer[myid=1]"
            f"(plain=10.77.0.5:2181)(secure=disabled):FastLeaderElection@996] - "
            f"Notification time out: {ms} ms"
        )

    labels = [r["label"] for r in captured_rows("\n".join(line(ms) for ms in (400, 3200, 12800)))]
    assert labels == ["normal", "normal", "network"]


def test_committed_zookeeper_capture_is_mostly_healthy_with_real_faults() -> None:
    rows = [json.loads(x) for x in (DATA / "zookeeper.jsonl").read_text().splitlines()]
    labels = Counter(r["label"] for r in rows)
    assert len(rows) >= 500
    assert labels["normal"] / len(rows) > 0.8
    assert labels["network"] >= 10  # peers lost, elections without a quorum
    disk_full = [r for r in rows if "Severe unrecoverable error" in r["text"]]
    assert disk_full and all("small disk" in r["how"] and r["label"] != "normal" for r in disk_full)
    hows = {r["how"] for r in rows}
    assert any("follower" in h and "kill -9" in h for h in hows)
