#!/usr/bin/env python3
"""Run a command under the seccomp part of a unit's sandbox, the way systemd 252 builds it.

    sandbox_exec.py [--strict] UNIT_FILE -- COMMAND [ARGS...]

Reads ``SystemCallFilter=``, ``SystemCallErrorNumber=``, ``RestrictAddressFamilies=``
and ``MemoryDenyWriteExecute=`` from the unit, expands syscall groups with
``systemd-analyze syscall-filter``, loads the same seccomp filters through
libseccomp, and execs COMMAND. Use it to check that the agent (or a new runtime:
a JIT would need writable+executable memory) works inside the unit before
shipping, on a machine where systemd is not PID 1.

``--strict`` turns "silently refused" into "killed with SIGSYS" for a syscall that
no allow-list group names and for any writable+executable mapping, so a test sees
the attempt instead of a quiet EPERM. Syscalls the unit removes on purpose
(``~@privileged @resources``) still get the unit's error number.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_CMP_EQ = 4
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
AF_MAX_KNOWN = 46  # families above this are refused as a range


def scmp_act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@dataclass
class UnitSandbox:
    """The seccomp-relevant settings of a unit's [Service] section."""

    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    error_number: int | None = None
    address_families: list[str] | None = None
    memory_deny_write_execute: bool = False


def parse_unit(text: str) -> UnitSandbox:
    """Settings in file order; a later ``~`` list removes from the allow list."""
    box = UnitSandbox()
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or "=" not in line:
            continue
        key, _, value = (p.strip() for p in line.partition("="))
        if key == "SystemCallFilter":
            if value.startswith("~"):
                box.deny += value[1:].split()
            else:
                box.allow += value.split()
        elif key == "SystemCallErrorNumber":
            box.error_number = getattr(errno, value) if not value.isdigit() else int(value)
        elif key == "RestrictAddressFamilies":
            box.address_families = value.split()
        elif key == "MemoryDenyWriteExecute":
            box.memory_deny_write_execute = value.lower() in ("yes", "true", "1", "on")
    return box


def syscall_groups() -> dict[str, list[str]]:
    """``@group -> members`` as systemd itself defines them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                         text=True, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and current is not None:
            name = line.strip()
            if name and not name.startswith("#"):
                current.append(name)
        elif not line.strip() or line.startswith("#"):
            current = None
    return groups


def expand(names: Iterable[str], groups: dict[str, list[str]]) -> set[str]:
    result: set[str] = set()
    for name in names:
        if name.startswith("@"):
            if name not in groups:
                raise ValueError(f"unknown syscall group {name}")
            result |= expand(groups[name], groups)
        else:
            result.add(name)
    return result


class Seccomp:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        self.lib.seccomp_init.restype = ctypes.c_void_p
        self.lib.seccomp_init.argtypes = [ctypes.c_uint32]
        self.lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        self.lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
            ctypes.POINTER(ScmpArgCmp)]
        self.lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self.lib.seccomp_release.argtypes = [ctypes.c_void_p]

    def number(self, name: str) -> int | None:
        nr = int(self.lib.seccomp_syscall_resolve_name(name.encode()))
        return nr if nr >= 0 else None  # not a syscall on this architecture

    def load(self, default: int, rules: list[tuple[int, str, list[ScmpArgCmp]]]) -> None:
        ctx = self.lib.seccomp_init(default)
        if not ctx:
            raise OSError("seccomp_init failed")
        try:
            for action, name, cmps in rules:
                nr = self.number(name)
                if nr is None or action == default:  # libseccomp refuses no-op rules
                    continue
                arr = (ScmpArgCmp * len(cmps))(*cmps) if cmps else None
                rc = self.lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
                if rc < 0:
                    raise OSError(-rc, f"seccomp rule for {name}: {os.strerror(-rc)}")
            rc = self.lib.seccomp_load(ctx)
            if rc < 0:
                raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")
        finally:
            self.lib.seccomp_release(ctx)


def apply(box: UnitSandbox, strict: bool) -> None:
    sc = Seccomp()
    groups = syscall_groups() if box.allow else {}  # before any filter applies to us
    refuse = scmp_act_errno(box.error_number) if box.error_number else SCMP_ACT_KILL_PROCESS
    extra: list[tuple[int, str, list[ScmpArgCmp]]] = []
    if box.memory_deny_write_execute:
        # systemd 252's rules (seccomp_memory_deny_write_execute), always EPERM there.
        act = SCMP_ACT_TRAP if strict else scmp_act_errno(errno.EPERM)
        wx = PROT_WRITE | PROT_EXEC
        extra += [(act, "mmap", [ScmpArgCmp(2, SCMP_CMP_MASKED_EQ, wx, wx)]),
                  (act, "mprotect", [ScmpArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)]),
                  (act, "pkey_mprotect",
                   [ScmpArgCmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)]),
                  (act, "shmat", [ScmpArgCmp(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)])]
    if box.address_families is not None:
        keep = {int(getattr(socket, f)) for f in box.address_families}
        nosupport = scmp_act_errno(errno.EAFNOSUPPORT)
        extra += [(nosupport, "socket", [ScmpArgCmp(0, SCMP_CMP_EQ, fam, 0)])
                  for fam in range(AF_MAX_KNOWN) if fam not in keep]
        extra.append((nosupport, "socket", [ScmpArgCmp(0, SCMP_CMP_GT, AF_MAX_KNOWN - 1, 0)]))
    if extra:
        sc.load(SCMP_ACT_ALLOW, extra)
    # The allow list goes last: it may not allow seccomp() itself.
    if box.allow:
        allowed = expand(box.allow, groups)
        removed = expand(box.deny, groups)
        rules: list[tuple[int, str, list[ScmpArgCmp]]] = [
            (SCMP_ACT_ALLOW, n, []) for n in sorted(allowed - removed)]
        rules += [(refuse, n, []) for n in sorted(removed)]
        sc.load(SCMP_ACT_TRAP if strict else refuse, rules)


def main(argv: list[str]) -> int:
    strict = "--strict" in argv[:2]
    args = [a for a in argv if a != "--strict"] if strict else list(argv)
    if len(args) < 3 or args[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    unit, command = Path(args[0]), args[2:]
    apply(parse_unit(unit.read_text()), strict)
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
