"""A bigger Schemathesis run against the real fleet server than the suite's
(tests/test_api_schema_fuzz.py runs 4 examples per operation and phase to stay near a
minute): every phase, every check, a token of each scope, ``--examples`` per operation.

    python -m benchmarks.api_schema_fuzz --examples 50

Prints, per scope, the cases generated, the failures (must be 0) and the time, then one
JSON line. Exit status 1 if any run found a failure.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from hil.broker import Mosquitto
from hil.fleet import FleetServer, setup_fleet

CONFIG = Path(__file__).resolve().parent.parent / "tests" / "schemathesis.toml"


def run(url: str, token: str, examples: int, seed: str | None,
        workdir: Path) -> dict[str, object]:
    cli = Path(sys.executable).with_name("schemathesis")
    argv = [str(cli), "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
            "-H", f"Authorization: Bearer {token}", "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(examples),
            "-w", "1", "--suppress-health-check", "all"]
    if seed:
        argv += ["--seed", seed]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=workdir)
    seconds = time.monotonic() - t0
    counts = re.search(r"(\d+) generated, (.*)", proc.stdout)
    if proc.returncode != 0:  # what it found, as schemathesis tells it
        print(proc.stdout[proc.stdout.find("FAILURES"):proc.stdout.find("SUMMARY")][-20000:])
    return {"ok": proc.returncode == 0, "seconds": round(seconds, 1),
            "generated": int(counts.group(1)) if counts else None,
            "outcome": counts.group(2).strip() if counts else proc.stdout[-2000:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=50)
    ap.add_argument("--seed", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        setup = setup_fleet(Path(tmp) / "fleet", mqtt_port=broker.port)
        server = FleetServer(setup).start(timeout=120)
        try:
            tokens = {"admin": setup.token}
            for scope in ("read", "deploy"):
                r = httpx.post(f"{setup.url}/api/v1/tokens", timeout=30,
                               json={"name": f"bench-{scope}", "scopes": [scope]},
                               headers={"Authorization": f"Bearer {setup.token}"})
                r.raise_for_status()
                tokens[scope] = r.json()["token"]
            results = {scope: run(setup.url, token, args.examples, args.seed, Path(tmp))
                       for scope, token in tokens.items()}
        finally:
            server.stop()
            broker.stop()
    for scope, r in results.items():
        print(f"{scope:>6}: {r['generated']} cases in {r['seconds']} s: {r['outcome']}")
    print(json.dumps({"examples": args.examples, "runs": results}))
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
