"""The users and the internet of a classic FTP server (stdlib ``ftplib``: run as a script).

Run by the classic-server capture scenario inside the client namespace::

    python3 ftp_client.py SERVER SESSIONS SEED PASSWORD SRC_ADDR...

Each session picks a source address and one behaviour: most are the routine ones
(anonymous downloads, a user uploading and fetching files, a user listing and leaving),
some are trouble (a mistyped password, an unknown user, root refused by ``ftpusers``,
a port scan that connects and leaves, a scanner trying common names in one connection,
a client that logs in and goes idle until the server times it out). The plan is seeded,
so a run repeats; a few sessions run at once, as users overlap.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import random
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

# (kind, weight): a real FTP server's day is mostly the first three
KINDS = [
    ("anonymous", 10),
    ("upload", 6),
    ("browse", 5),
    ("typo", 2),
    ("unknown", 1),
    ("root", 1),
    ("portscan", 2),
    ("guesser", 1),
]
# What a scanner tries, one after the other on one connection
GUESSES = ["admin", "ftp", "test", "user", "guest", "ftpuser", "backup", "www", "oracle", "pi"]


def plan(sessions: int, seed: int, sources: list[str]) -> list[tuple[str, str]]:
    """(kind, source address) for every session; the idle one comes once, at the end."""
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS, strict=True)
    chosen = rng.choices(kinds, weights, k=sessions)
    return [(kind, rng.choice(sources)) for kind in chosen] + [("idle", sources[0])]


def _connect(server: str, src: str) -> ftplib.FTP:
    return ftplib.FTP(server, timeout=20, source_address=(src, 0))


def one(server: str, password: str, kind: str, src: str, rng: random.Random) -> None:
    if kind == "portscan":
        socket.create_connection((server, 21), 5, source_address=(src, 0)).close()
        return
    ftp = _connect(server, src)
    try:
        if kind == "anonymous":
            ftp.login("anonymous", rng.choice(["guest@", "mozilla@example.com", "wget@"]))
            ftp.nlst()
            ftp.retrbinary("RETR README", io.BytesIO().write)
        elif kind == "upload":
            ftp.login("deploy", password)
            name = f"report-{rng.randrange(1000)}.csv"
            ftp.storbinary(f"STOR {name}", io.BytesIO(b"t,v\n" * rng.randrange(10, 400)))
            ftp.retrbinary(f"RETR {name}", io.BytesIO().write)
            ftp.delete(name)
        elif kind == "browse":
            ftp.login("deploy", password)
            ftp.pwd()
            ftp.dir(lambda _line: None)
        elif kind == "typo":
            with contextlib.suppress(ftplib.error_perm):
                ftp.login("deploy", password[:-1])
            ftp.login("deploy", password)
            ftp.nlst()
        elif kind in ("unknown", "root"):
            user = "root" if kind == "root" else rng.choice(["jsmith", "webmaster", "sales"])
            with contextlib.suppress(ftplib.error_perm):
                ftp.login(user, "secret")
        elif kind == "guesser":
            for user in rng.sample(GUESSES, 6):
                with contextlib.suppress(ftplib.error_perm, ftplib.error_temp):
                    ftp.login(user, rng.choice(["123456", "password", user]))
        elif kind == "idle":
            ftp.login("deploy", password)
            time.sleep(12)  # longer than the server's idle timeout
            return
        ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        pass
    finally:
        ftp.close()


def main(argv: list[str]) -> int:
    server, sessions, seed, password, sources = (
        argv[0],
        int(argv[1]),
        int(argv[2]),
        argv[3],
        argv[4:],
    )
    jobs = plan(sessions, seed, sources)
    rng = random.Random(seed + 1)

    def run(job: tuple[str, str], r: random.Random) -> None:
        with contextlib.suppress(OSError, EOFError, ftplib.Error):
            one(server, password, *job, r)
        time.sleep(r.uniform(0.05, 0.4))

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(run, jobs, [random.Random(rng.random()) for _ in jobs]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
