"""Device package footprint per flavour and architecture.

    python benchmarks/device_footprint.py [--flavour F ...] [--arch A ...] [--offline]

Builds each package with packaging/debian/build.sh (zstd -9, as shipped) and prints
the .deb size, the installed size (the control file's Installed-Size, MiB), the
budget of issue 11 (litert <= 80 MB, onnxruntime <= 150 MB installed) and the
largest parts of the venv. The figures go into docs/operations.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = {"litert": 80, "onnxruntime": 150}
BEFORE = "before: 58.7 MB .deb, 221 MB installed (one package, all of nanofleet, ONNX Runtime)"


def build(flavour: str, arch: str, out: Path, offline: bool) -> Path:
    cmd = ["bash", str(ROOT / "packaging/debian/build.sh"), "--flavour", flavour, "--arch",
           arch, "--out", str(out), *(["--offline"] if offline else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{flavour}/{arch}: build failed\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def largest_parts(deb: Path, work: Path, n: int = 5) -> str:
    payload = work / deb.stem
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(payload)], check=True)
    (site,) = payload.glob("usr/lib/nanofleet-agent/lib/python3.*/site-packages")
    sizes = []
    for part in site.iterdir():
        files = part.rglob("*") if part.is_dir() else [part]
        sizes.append((sum(f.stat().st_size for f in files if f.is_file()) / 2**20, part.name))
    sizes.sort(reverse=True)
    return ", ".join(f"{name} {mb:.1f}" for mb, name in sizes[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavour", action="append", choices=sorted(BUDGET_MB))
    parser.add_argument("--arch", action="append", choices=["amd64", "arm64"])
    parser.add_argument("--offline", action="store_true", help="only from the wheelhouse")
    args = parser.parse_args()
    print(BEFORE)
    print(f"{'flavour':<12} {'arch':<6} {'.deb MB':>8} {'installed MiB':>14} {'budget':>7}  "
          "largest parts (MiB)")
    with tempfile.TemporaryDirectory(prefix="nf-footprint-") as tmp:
        for arch in args.arch or ["amd64", "arm64"]:
            for flavour in args.flavour or ["litert", "onnxruntime"]:
                deb = build(flavour, arch, Path(tmp) / "dist", args.offline)
                fields = subprocess.run(["dpkg-deb", "--field", str(deb), "Installed-Size"],
                                        capture_output=True, text=True, check=True).stdout
                installed = int(re.sub(r"\D", "", fields)) / 1024
                verdict = "ok" if installed <= BUDGET_MB[flavour] else "OVER"
                print(f"{flavour:<12} {arch:<6} {deb.stat().st_size / 1e6:>8.1f} "
                      f"{installed:>14.1f} {BUDGET_MB[flavour]:>5} {verdict:<4} "
                      f"{largest_parts(deb, Path(tmp))}", flush=True)


if __name__ == "__main__":
    main()
