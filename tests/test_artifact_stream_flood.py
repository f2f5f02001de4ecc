"""A chunk publisher that is not honest (the server's account misused, or a broker that is
not ours any more) cannot grow the device's memory or hold a transfer for long: the real
MqttTransport fetches from the real ArtifactStreamer through a real Mosquitto while a
rogue client answers every request too, with chunks longer than asked for and chunks at
made-up offsets; and a stream slower than the minimum rate is cut off."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.ota.mqtt_transport import MqttTransport
from agent.ota.transport import TransferTimeout
from contract import topics
from contract.artifacts import HEADER_PROPERTY, ArtifactChunk, ArtifactRequest
from fleet_server.artifact_stream import file_version
from tests.support.mosquitto import Mosquitto
from tests.test_artifact_stream import _bytes, agent_link, streamer

DEV = "pump-07"
CHUNK = 4096
WINDOW = 8


class Rogue:
    """Answers each request with a chunk of twice the asked size at the asked offset and
    ``per_request`` chunk-sized ones at offsets no request names."""

    def __init__(self, port: int, per_request: int, served: Path) -> None:
        self.per_request = per_request
        # the served file's size and version, as the server announces them: the
        # transfer takes the rogue's headers as the file's (worst case)
        st = served.stat()
        self.size, self.version = st.st_size, file_version(st)
        self.sent = 0
        self.seen = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rogue",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_request
        self.client.on_connect = lambda c, *_: c.subscribe(topics.artifact_requests(DEV), 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _chunk(self, req: ArtifactRequest, offset: int, payload: bytes, size: int) -> None:
        props = Properties(PacketTypes.PUBLISH)
        header = ArtifactChunk(transfer=req.transfer, offset=offset, size=size,
                               version=self.version)
        props.UserProperty = [(HEADER_PROPERTY, header.model_dump_json())]
        self.client.publish(topics.artifact_chunks(DEV, req.transfer), payload, 0,
                            properties=props)
        self.sent += 1

    def _on_request(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        req = ArtifactRequest.model_validate_json(msg.payload)
        self._chunk(req, req.offset, b"\xee" * (2 * CHUNK), self.size)
        for i in range(1, self.per_request + 1):
            self._chunk(req, req.offset + 7 * i + 1, b"\xee" * CHUNK, self.size)
        self.seen.set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_made_up_and_oversized_chunks_are_dropped_and_memory_stays_bounded(
        broker: Mosquitto, tmp_path: Path) -> None:
    repo = tmp_path / "repository"
    (repo / "metadata").mkdir(parents=True)
    (repo / "targets").mkdir()
    (repo / "metadata" / "timestamp.json").write_bytes(b"{}")
    data = _bytes(300_000, 9)
    (repo / "targets" / "model.bin").write_bytes(data)
    rogue = Rogue(broker.port, per_request=3 * WINDOW, served=repo / "targets" / "model.bin")
    link = agent_link(broker.port)
    t = MqttTransport(DEV, link, timeout=20.0, chunk_size=CHUNK, window=WINDOW)
    try:
        with streamer(broker.port, repo):
            got = b"".join(t.fetch("mqtt:targets/model.bin", 0, len(data)))
    finally:
        t.close()
        link.stop()
        rogue.close()
    assert rogue.seen.is_set() and rogue.sent > 100
    assert got == data, "only the honest chunks made the file"
    assert t.chunks_dropped > 0
    # kept ahead of the stream: never more than 2 x window x chunk and the chunk due next,
    # whatever was sent (without the bound: every made-up offset, ~0.8 MB here)
    assert 0 < t.most_buffered <= (2 * WINDOW + 1) * CHUNK


def test_a_stream_below_the_minimum_rate_is_cut_off(broker: Mosquitto, tmp_path: Path) -> None:
    """The server's per-device rate limit plays the dripping publisher: 64 KiB/s against a
    minimum of 256 KiB/s, so once the transfer is `timeout` old it ends, as over HTTP."""
    repo = tmp_path / "repository"
    (repo / "metadata").mkdir(parents=True)
    (repo / "targets").mkdir()
    (repo / "targets" / "model.bin").write_bytes(_bytes(1_000_000, 4))
    link = agent_link(broker.port)
    t = MqttTransport(DEV, link, timeout=1.5, chunk_size=CHUNK, window=WINDOW,
                      min_rate=256 * 1024)
    try:
        with streamer(broker.port, repo, device_rate_bytes_s=64 * 1024), \
                pytest.raises(TransferTimeout, match="below the minimum rate"):
            b"".join(t.fetch("mqtt:targets/model.bin"))
    finally:
        t.close()
        link.stop()
