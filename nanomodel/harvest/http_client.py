"""Web traffic a small server sees, from raw sockets (stdlib only: run as a script).

Run by the web capture scenarios inside the client namespace::

    python3 http_client.py HOST PORT ROUNDS SEED SRC_ADDR...

Mostly ordinary visitors (pages, assets, an API behind a reverse proxy), with what
comes with them on any public server: missing files and the usual vulnerability probes,
denied directories, a directory without an index, wrong and unknown basic-auth users, a
CGI script that fails, a backend that is slow or down, malformed requests, TLS spoken to
the plain HTTP port and clients that leave mid-request.
"""

from __future__ import annotations

import base64
import contextlib
import random
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

GOOD = [
    "/",
    "/index.html",
    "/style.css",
    "/app.js",
    "/status.json",
    "/api/health",
    "/api/readings?since=1700000000",
    "/images/logo.png",
    "/docs/",
]
MISSING = [
    "/favicon.ico",
    "/robots.txt",
    "/wp-login.php",
    "/.env",
    "/phpmyadmin/index.php",
    "/admin/config.php",
    "/.git/config",
    "/cgi-bin/luci",
    "/boaform/admin/formLogin",
    "/images/missing.png",
    "/apple-touch-icon.png",
    "/sitemap.xml",
]
ODD = [
    "denied",
    "noindex",
    "auth_bad",
    "auth_unknown",
    "cgi_fail",
    "slow",
    "down",
    "bad_request",
    "tls",
    "abort",
    "traversal",
    "bad_method",
    "long_header",
]


def _auth(user: str, pw: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode() + "\r\n"


def request(host: str, port: int, src: str, kind: str, rng: random.Random) -> None:
    raw: bytes
    path, extra = "/", ""
    if kind == "good":
        path = rng.choice(GOOD)
    elif kind == "missing":
        path = rng.choice(MISSING)
    elif kind == "denied":
        path = rng.choice(["/private/", "/private/keys.txt", "/.htpasswd"])
    elif kind == "noindex":
        path = "/uploads/"
    elif kind in ("auth_bad", "auth_unknown"):
        path = "/admin/"
        extra = _auth(
            "operator" if kind == "auth_bad" else rng.choice(["admin", "root"]),
            "guess" + str(rng.randint(1, 99)),
        )
    elif kind == "cgi_fail":
        path = "/cgi-bin/report.sh"
    elif kind == "slow":
        path = "/api/slow"
    elif kind == "down":
        path = "/legacy/"
    elif kind == "traversal":
        path = "/static/..%2f..%2f..%2fetc/passwd"
    if kind == "bad_request":
        raw = b"GET /index.html HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n"
    elif kind == "tls":
        raw = bytes.fromhex("16030100a5010000a10303") + bytes(rng.randrange(256) for _ in range(40))
    elif kind == "bad_method":
        raw = b"FOO / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n"
    elif kind == "long_header":
        raw = b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"a" * 9000 + b"\r\n\r\n"
    else:
        raw = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\n"
            f"{extra}Connection: close\r\n\r\n"
        ).encode()
    s = socket.create_connection((host, port), 5, source_address=(src, 0))
    s.settimeout(8)
    try:
        if kind == "abort":
            s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")  # and never finish it
            time.sleep(0.2)
            return
        s.sendall(raw)
        with contextlib.suppress(OSError):
            while s.recv(65536):
                pass
    finally:
        s.close()


def main(argv: list[str]) -> int:
    host, port, rounds, seed, sources = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), argv[4:]
    rng = random.Random(seed)
    kinds = ["good"] * 10 + ["missing"] * 8 + ODD
    jobs = [
        (rng.choice(sources), rng.choice(kinds), random.Random(rng.random())) for _ in range(rounds)
    ]

    def run(job: tuple[str, str, random.Random]) -> None:
        with contextlib.suppress(OSError):
            request(host, port, *job)
        time.sleep(job[2].uniform(0.0, 0.1))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
