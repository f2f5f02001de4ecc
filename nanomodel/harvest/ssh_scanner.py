"""What the internet does to an SSH port, from raw sockets (stdlib only: run as a script).

Run by the sshd capture scenario inside the client namespace::

    python3 ssh_scanner.py SERVER ROUNDS SEED SRC_ADDR...

Each round picks a source address and one behaviour seen on real gateways: a port scan
(connect and close), a client that sends its banner and leaves, a reset, an HTTP probe,
a libssh-style client that says ``11: Bye Bye`` before authenticating, and old clients
whose key-exchange offer (SHA-1 groups, ``ssh-rsa``/``ssh-dss`` host keys, CBC ciphers)
the server refuses. Several run at once, as scanners overlap.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def _string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _packet(payload: bytes) -> bytes:
    """An unencrypted SSH binary packet (what is sent before keys are exchanged)."""
    pad = 8 - (len(payload) + 5) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack(">IB", len(payload) + pad + 1, pad) + payload + os.urandom(pad)


def _kexinit(kex: str, hostkey: str, cipher: str, mac: str) -> bytes:
    lists = [kex, hostkey, cipher, cipher, mac, mac, "none", "none", "", ""]
    body = b"\x14" + os.urandom(16) + b"".join(_string(x.encode()) for x in lists)
    return _packet(body + b"\x00" + b"\x00\x00\x00\x00")


def _disconnect(reason: int, text: str) -> bytes:
    return _packet(b"\x01" + struct.pack(">I", reason) + _string(text.encode()) + _string(b""))


# Offers of old or odd clients, as scanners send them
OLD_OFFERS = [
    ("diffie-hellman-group1-sha1", "ssh-rsa", "aes128-cbc", "hmac-sha1"),
    (
        "diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1",
        "ssh-rsa,ssh-dss",
        "aes128-ctr,aes128-cbc,3des-cbc",
        "hmac-sha1,hmac-md5",
    ),
    ("curve25519-sha256,ecdh-sha2-nistp256", "ssh-rsa,ssh-dss", "aes128-ctr", "hmac-sha2-256"),
    ("curve25519-sha256", "ssh-ed25519", "aes128-cbc,3des-cbc,blowfish-cbc", "hmac-sha1"),
    ("diffie-hellman-group-exchange-sha1", "ssh-dss", "aes256-cbc", "hmac-sha1"),
]
BANNERS = [
    "SSH-2.0-Go",
    "SSH-2.0-libssh_0.9.6",
    "SSH-2.0-libssh2_1.10.0",
    "SSH-2.0-PuTTY_Release_0.73",
    "SSH-2.0-paramiko_2.7.2",
    "SSH-2.0-OpenSSH_7.4",
]


def one(server: str, src: str, kind: str, rng: random.Random) -> None:
    target = "fd77::1" if ":" in src else server  # IPv6 hosts reach the server's IPv6 address
    s = socket.create_connection((target, 22), 5, source_address=(src, 0))
    try:
        if kind == "scan":  # connect and close before reading anything
            return
        s.recv(200)
        if kind == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if kind == "http":
            s.sendall(b"GET / HTTP/1.1\r\nHost: " + server.encode() + b"\r\n\r\n")
            time.sleep(0.3)
            return
        banner = rng.choice(BANNERS)
        s.sendall(banner.encode() + b"\r\n")
        if kind == "banner":
            time.sleep(0.2)
            return
        s.recv(4096)  # the server's KEXINIT
        if kind == "byebye":
            s.sendall(_disconnect(11, "Bye Bye"))
        elif kind == "oldkex":
            s.sendall(_kexinit(*rng.choice(OLD_OFFERS)))
        time.sleep(0.4)
    except OSError:
        pass
    finally:
        s.close()


KINDS = ["scan"] * 3 + ["banner"] * 2 + ["reset", "http"] + ["byebye"] * 4 + ["oldkex"] * 3


def main(argv: list[str]) -> int:
    server, rounds, seed, sources = argv[0], int(argv[1]), int(argv[2]), argv[3:]
    rng = random.Random(seed)
    jobs = [
        (rng.choice(sources), rng.choice(KINDS), random.Random(rng.random())) for _ in range(rounds)
    ]

    def run(job: tuple[str, str, random.Random]) -> None:
        with contextlib.suppress(OSError):
            one(server, *job)
        time.sleep(job[2].uniform(0.05, 0.3))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
