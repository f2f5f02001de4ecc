"""packaging/debian/lock.py and its lock: the device package's dependencies pinned by
version and sha256 for every architecture we build (the build's side of it, a changed
wheel refused: tests/test_device_package.py)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DEB = ROOT / "packaging" / "debian"


def _lock_module() -> ModuleType:
    # Loaded from its path: the repository's packaging/ directory is not the `packaging`
    # library imported above.
    spec = importlib.util.spec_from_file_location("nanofleet_deb_lock", DEB / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lock = _lock_module()


def _entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) as pip reads a hash-checking requirements file."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            head, *opts = line.split()
            name, version = head.split("==")
            out[name] = (version, [o.removeprefix("--hash=sha256:") for o in opts])
    return out


@pytest.mark.parametrize("source", sorted(lock.INPUTS))
def test_the_lock_pins_every_requirement_with_hashes(source: str) -> None:
    entries = _entries(lock.LOCK_DIR / f"{source}.txt")
    assert entries
    for name, (version, hashes) in entries.items():
        assert name == lock.normalize(name) and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version)
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
        assert len(hashes) <= len(lock.MACHINES), name
    # What requirements/<source>.txt asks for is in the lock, at a version it accepts.
    for line in (lock.REQUIREMENTS / f"{source}.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pinned = entries.get(lock.normalize(req.name))
            assert pinned is not None, f"{req.name} is not locked: run packaging/debian/lock.py"
            assert req.specifier.contains(pinned[0], prereleases=True), (req, pinned)
    if not lock.INPUTS[source]:
        assert len(entries) == 1  # a runtime without its declared dependencies


def test_the_lock_file_is_what_render_writes() -> None:
    """The committed files are the script's output: header with the input's sha256, names
    and hashes sorted (a hand edit that reorders or adds entries shows)."""
    for source in lock.INPUTS:
        path = lock.LOCK_DIR / f"{source}.txt"
        digest = lock.input_digest(lock.REQUIREMENTS / f"{source}.txt")
        assert lock.render(source, _entries(path), digest) == path.read_text()


def test_the_wheels_built_from_are_the_locked_bytes() -> None:
    """Every wheel of a locked version in the build's wheelhouse (filled by the package
    builds) hashes to one of the lock's hashes: a hash edited by hand, or a wheel the
    index changed, shows here as well as in the build."""
    locked = {}
    for source in lock.INPUTS:
        locked.update(_entries(lock.LOCK_DIR / f"{source}.txt"))
    seen = 0
    for house in sorted((ROOT / "build" / "wheelhouse").glob("*")):
        for path in sorted(house.glob("*.whl")):
            wheel = lock.parse_wheel(path)
            if locked.get(wheel.name, ("", []))[0] == wheel.version:
                assert wheel.sha256 in locked[wheel.name][1], path.name
                seen += 1
    if not seen:
        pytest.skip("no wheelhouse yet (build/wheelhouse is filled by the first .deb build)")


def test_a_lock_older_than_its_requirements_is_refused(tmp_path: Path) -> None:
    """A floor raised for a security fix (or a new dependency) without a new lock: build.sh
    runs `lock.py check` and stops, naming the file."""
    shutil.copytree(lock.REQUIREMENTS, tmp_path / "requirements")
    reqs, locks = tmp_path / "requirements", tmp_path / "requirements" / "lock"
    assert lock.stale(reqs, locks) == []
    with (reqs / "common.txt").open("a") as f:
        f.write("cryptography>=99\n")
    (locks / "litert.txt").unlink()
    assert lock.stale(reqs, locks) == [
        "requirements/common.txt changed since requirements/lock/common.txt was made",
        "requirements/lock/litert.txt is missing"]
    proc = subprocess.run([sys.executable, str(DEB / "lock.py"), "check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # the committed lock is current


def test_the_lock_is_made_with_the_devices_python_only(tmp_path: Path) -> None:
    """pip resolves environment markers for the interpreter running it."""
    lock.check_python(sys.executable)  # the suite runs on CPython 3.11, as Debian 12
    fake = tmp_path / "python3.13"
    fake.write_text("#!/bin/sh\necho CPython 3.13\n")
    fake.chmod(0o755)
    with pytest.raises(lock.LockError, match=r"is CPython 3.13; the lock is made with CPython"
                       r" 3.11"):
        lock.check_python(str(fake))


def _wheel(tmp: Path, filename: str, data: bytes) -> Any:
    path = tmp / filename
    path.write_bytes(data)
    return lock.parse_wheel(path)


def test_merge_one_version_over_the_architectures_with_each_wheels_hash(tmp_path: Path) -> None:
    pure = _wheel(tmp_path, "Paho_MQTT-2.2.0-py3-none-any.whl", b"pure")
    amd = _wheel(tmp_path, "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl", b"x86")
    arm = _wheel(tmp_path, "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.whl", b"arm")
    merged = lock.merge({"amd64": [pure, amd], "arm64": [pure, arm]})
    assert list(merged) == ["numpy", "paho-mqtt"]
    assert merged["numpy"][0] == "2.4.6" and len(merged["numpy"][1]) == 2
    assert merged["paho-mqtt"] == ("2.2.0", [pure.sha256])


def test_merge_refuses_architectures_that_disagree(tmp_path: Path) -> None:
    """An index with a newer wheel for one architecture only would give the two packages
    different dependencies: the lock refuses and says which package to pin."""
    amd = _wheel(tmp_path, "numpy-2.4.7-cp311-cp311-manylinux_2_27_x86_64.whl", b"x86")
    arm = _wheel(tmp_path, "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.whl", b"arm")
    only_amd = _wheel(tmp_path, "cffi-2.1.1-cp311-cp311-manylinux2014_x86_64.whl", b"c")
    with pytest.raises(lock.LockError) as err:
        lock.merge({"amd64": [amd, only_amd], "arm64": [arm]})
    text = str(err.value)
    assert "numpy: the architectures resolve to different versions (amd64 2.4.7, arm64 2.4.6)" \
        in text
    assert "cffi: no wheel for arm64" in text and "pin one version" in text


def test_pip_target_and_bad_input() -> None:
    args = lock.pip_target("arm64")
    assert "manylinux_2_36_aarch64" in args and "--only-binary=:all:" in args
    assert args[args.index("--abi") + 1] == "cp311"
    with pytest.raises(lock.LockError, match="unknown architecture 'riscv64'"):
        lock.pip_target("riscv64")
    with pytest.raises(lock.LockError, match="not a wheel file name"):
        lock.parse_wheel(Path("numpy-2.4.6.tar.gz"))
    proc = subprocess.run([sys.executable, str(DEB / "lock.py"), "pip-target", "mips"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "lock.py: unknown architecture 'mips'" in proc.stderr
