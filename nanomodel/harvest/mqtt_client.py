"""A fleet of MQTT sensors talking to one broker, from raw sockets (stdlib only: a script).

Run by the mosquitto capture scenario inside the client namespace::

    python3 mqtt_client.py HOST ROUNDS SEED SRC_ADDR...

Most rounds are a sensor that connects, publishes a few readings and disconnects, or a
dashboard that subscribes for a moment; the rest are what a real broker also sees:
devices that drop off without DISCONNECT, stop sending keepalives, or present a wrong
password or an unknown user.
"""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(x: str) -> bytes:
    return len(x.encode()).to_bytes(2, "big") + x.encode()


def connect(client_id: str, user: str, password: str, keepalive: int) -> bytes:
    body = _s("MQTT") + bytes([4, 0xC2]) + keepalive.to_bytes(2, "big")
    body += _s(client_id) + _s(user) + _s(password)
    return b"\x10" + _varint(len(body)) + body


def publish(topic: str, payload: str) -> bytes:
    body = _s(topic) + payload.encode()
    return b"\x30" + _varint(len(body)) + body


def subscribe(topic: str) -> bytes:
    body = b"\x00\x01" + _s(topic) + b"\x00"
    return b"\x82" + _varint(len(body)) + body


DISCONNECT = b"\xe0\x00"
KINDS = ["sensor"] * 12 + ["dashboard"] * 2 + ["drop"] * 2 + ["keepalive", "badpw", "unknown"]
PLACES = ["pump", "boiler", "meter", "hvac", "door", "tank", "fan", "cam"]


def session(host: str, src: str, kind: str, rng: random.Random) -> None:
    cid = f"{rng.choice(PLACES)}-{rng.randint(1, 40):02d}"
    user, pw = "sensor", "s3nsor"
    if kind == "dashboard":
        cid, user, pw = f"dashboard-{rng.randint(1, 8)}", "admin", "adm1n"
    elif kind == "badpw":
        pw = "s3ns0r"
    elif kind == "unknown":
        user = rng.choice(["test", "mqtt", "guest"])
    keepalive = 1 if kind == "keepalive" else 60
    s = socket.create_connection((host, 1883), 5, source_address=(src, 0))
    try:
        s.sendall(connect(cid, user, pw, keepalive))
        ack = s.recv(4)
        if len(ack) < 4 or ack[3] != 0:
            return
        if kind == "dashboard":
            s.sendall(subscribe("sensors/#"))
            time.sleep(rng.uniform(0.5, 1.5))
        else:
            for _ in range(rng.randint(1, 4)):
                s.sendall(publish(f"sensors/{cid}/reading", f"{rng.uniform(10, 90):.1f}"))
        if kind == "keepalive":
            time.sleep(3)  # past 1.5 x keepalive: the broker drops the client
        elif kind != "drop":
            s.sendall(DISCONNECT)
        time.sleep(0.1)
    finally:
        s.close()


def main(argv: list[str]) -> int:
    host, rounds, seed, sources = argv[0], int(argv[1]), int(argv[2]), argv[3:]
    rng = random.Random(seed)
    jobs = [
        (rng.choice(sources), rng.choice(KINDS), random.Random(rng.random())) for _ in range(rounds)
    ]

    def run(job: tuple[str, str, random.Random]) -> None:
        with contextlib.suppress(OSError):
            session(host, *job)
        time.sleep(job[2].uniform(0.0, 0.1))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
