"""Regenerate ``nanomodel/data/real/templates/*.jsonl`` from unpacked Debian sources.

Usage (sources unpacked with ``apt-get source`` into one scratch directory, outside
the repository)::

    python -m nanomodel.harvest.run /work/scratch/src [--out nanomodel/data/real/templates]

For every :data:`~nanomodel.harvest.sources.SOURCES` entry this reads the package's
``.dsc`` (name and Debian version), finds its log calls, keeps the format strings a log
would show (no debug level, at least two words of text), labels each with
:func:`~nanomodel.harvest.rules.label_template` (or an override), and writes one JSON
object per template. Same inputs, same output, byte for byte.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from nanomodel.harvest import clex
from nanomodel.harvest.overrides import EXPANSIONS, apply_override
from nanomodel.harvest.rules import label_template
from nanomodel.harvest.sources import SOURCES, Source, call_level
from nanomodel.harvest.sources_classic import DECORATORS
from nanomodel.harvest.sources_hpc import TABLE_READERS

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "real" / "templates"
_WORD = re.compile(r"[A-Za-z]{3,}")
_CONV = re.compile(
    r"%(?:\{\w+\}|[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|j|z|t|L|q)?[diouxXeEfgGcspmn%])"
)
MAX_LEN = 300
MAX_LEVEL_ALERTS = 150
_TABLE = re.compile(r'\{\s*(LOG_[A-Z]+)\s*,\s*("(?:\\.|[^"\\\n])*")\s*\}')


def package_dir(root: Path, package: str) -> tuple[Path, str]:
    """(unpacked directory, "name version") of a source package under ``root``."""
    # <package>_<version>.upstream (same "Version:" field) stands for a .dsc where the
    # tree is an upstream release because Debian's archive did not serve it (SOURCES.md)
    dscs = sorted(root.glob(f"{package}_*.dsc")) or sorted(root.glob(f"{package}_*.upstream"))
    if not dscs:
        raise FileNotFoundError(
            f"no {package}_*.dsc under {root}: run apt-get source {package} there"
        )
    # the .dsc's Version field keeps the epoch ("1:9.2p1-2") that its file name drops
    found = re.search(r"^Version: *(\S+)", dscs[-1].read_text(errors="replace"), re.M)
    version = found.group(1) if found else dscs[-1].name[len(package) + 1 : -4]
    upstream = version.split(":")[-1].rsplit("-", 1)[0]
    nested = root / package / f"{package}-{upstream}"  # a selective unpack (linux)
    for cand in (root / f"{package}-{upstream}", nested, root / package):
        if cand.is_dir():
            return cand, f"{package} {version}"
    subdirs = sorted(p for p in root.glob(f"{package}-*") if p.is_dir())
    if not subdirs:
        raise FileNotFoundError(f"{package} {version} is not unpacked under {root}")
    return subdirs[0], f"{package} {version}"


def files_of(base: Path, src: Source) -> list[Path]:
    found: set[Path] = set()
    for pattern in src.include:
        found.update(p for p in base.glob(pattern) if p.is_file())
    keep = []
    for p in sorted(found):
        rel = "/" + p.relative_to(base).as_posix()
        if not any(x in rel for x in src.exclude):
            keep.append(p)
    return keep


def clean(fmt: str) -> str | None:
    """The message as a log line shows it, or None when it is not a log message."""
    text = fmt.strip().replace("\r", "")
    if "\n" in text:  # multi-line help or banners: keep the first line only when it is a sentence
        text = text.split("\n")[0].strip()
    text = re.sub(r"\s+", " ", text).strip()
    if not text or len(text) > MAX_LEN:
        return None
    prose = _CONV.sub(" ", text)
    # Debug text that some daemons log at info ("DEBUG: ...") is not what a running system shows.
    if len(_WORD.findall(prose)) < 2 or text.lower().startswith(("usage", "try '", "debug")):
        return None
    if re.match(r"-{1,2}\w\S* .*\s:\s", text):  # a command-line option's help line
        return None
    return text


def harvest_source(root: Path, src: Source) -> Iterator[dict[str, str]]:
    base, package = package_dir(root, src.package)
    macros = {**clex.BUILTIN_MACROS, **({} if src.java else header_macros(base))}
    files = files_of(base, src)
    names = re.compile(src.calls)
    seen: set[str] = set()
    for path in files:
        text = path.read_text(errors="replace")
        local = {**macros, **clex.string_macros(text)}
        rel = path.relative_to(base).as_posix()
        alert, from_path = src.alert_for(rel)
        if src.tables:
            for m in _TABLE.finditer(text):
                msg_clean = clean(clex.unquote(m.group(2)))
                if msg_clean is None or msg_clean in seen:
                    continue
                seen.add(msg_clean)
                level = call_level("", [m.group(1)])
                yield labelled(
                    src,
                    package,
                    f"{rel}:{text.count(chr(10), 0, m.start()) + 1}",
                    msg_clean,
                    level,
                    alert,
                    from_path,
                )
        for call in clex.find_calls(text, names):
            got = clex.format_of(call, local, java=src.java)
            if src.format_index is not None:
                got = _format_at(call, src.format_index, local)
            if got is None:
                continue
            fmt, idx = got
            words = clex.level_words(call, idx)
            fixed = [
                lv
                for pat, lv in src.call_levels.items()
                if any(re.fullmatch(pat, w) for w in (call.name, *words))
            ]
            level = fixed[0] if fixed else call_level(call.name, words)
            if level == "debug" or (
                src.debug_words and any(re.fullmatch(src.debug_words, w) for w in words)
            ):
                continue
            if src.func_arg and fmt.startswith("%s: ") and _arg_is_func(call, idx + 1):
                fmt = f"{clex.enclosing_function(text, call.line) or '%{func}'}{fmt[2:]}"
            msg = clex_prefix(src, call.name, level) + fmt
            if src.func_prefix and re.fullmatch(src.func_prefix, call.name):
                msg = f"{clex.enclosing_function(text, call.line) or '%{func}'}: {msg}"
            pam_module = re.match(r"modules/(pam_\w+)/", rel)
            if src.source == "pam" and call.name.startswith("pam_") and pam_module:
                # pam_vsyslog writes "<module>(<service>:<type>): " before the message
                msg = f"{pam_module.group(1)}(%{{pamsvc}}): {fmt}"
            if src.source == "openssh":
                msg = _openssh_decor(call.name, msg, text, call.line)
            if src.source in DECORATORS:
                msg = DECORATORS[src.source](call.name, level, msg, text, call.line)
            msg_clean = clean(msg)
            if msg_clean is None or msg_clean in seen:
                continue
            seen.add(msg_clean)
            yield labelled(src, package, f"{rel}:{call.line}", msg_clean, level, alert, from_path)
    for origin, template, level in (
        TABLE_READERS[src.source](base) if src.source in TABLE_READERS else ()
    ):
        if template not in seen:
            seen.add(template)
            yield labelled(src, package, origin, template, level, src.alert, False)
    for exp in EXPANSIONS.get(src.source, []):
        line = _line_of(base / exp.file, exp.anchor)
        if exp.template in seen:
            continue
        seen.add(exp.template)
        row = {
            "source": src.source,
            "package": package,
            "origin": f"{exp.file}:{line}",
            "template": exp.template,
            "level": exp.level,
            "label": exp.label,
            "reason": f"expansion: {exp.reason}",
        }
        yield row


@functools.cache
def header_macros(base: Path) -> dict[str, str]:
    """String macros defined in the package's headers (event names, MACSTR-like formats)."""
    macros: dict[str, str] = {}
    for h in sorted(p for p in base.rglob("*.h") if p.is_file())[:4000]:
        macros.update(clex.string_macros(h.read_text(errors="replace")))
    return macros


def _line_of(path: Path, anchor: str) -> int:
    """Line number of the first line containing ``anchor`` (expansions cite real code)."""
    for n, line in enumerate(path.read_text(errors="replace").split("\n"), 1):
        if anchor in line:
            return n
    raise ValueError(
        f"{path}: anchor {anchor!r} not found; the expansion no longer matches the source"
    )


def _format_at(call: clex.Call, index: int, macros: dict[str, str]) -> tuple[str, int] | None:
    """The call's argument ``index`` as its format, when it is all literals or one string
    macro (gpm's ``gpm_report(GPM_PR_INFO, GPM_MESS_STARTED)``, xinetd's ``ES_NOMEM``)."""
    args = clex.split_args(call.args)
    if index >= len(args):
        return None
    arg = args[index]
    if len(arg) == 1 and arg[0].kind == "id" and arg[0].text in macros:
        return macros[arg[0].text], index
    fmt = clex.literal_run(arg, macros)
    return None if fmt is None else (fmt, index)


def _arg_is_func(call: clex.Call, index: int) -> bool:
    """Whether the call's argument ``index`` is ``__func__``."""
    args = clex.split_args(call.args)
    return index < len(args) and [t.text for t in args[index]] == ["__func__"]


def clex_prefix(src: Source, name: str, level: str) -> str:
    """What the logging function writes before the format (unit name, device, "error: ")."""
    for pattern, prefix in src.prefixes.items():
        if re.fullmatch(pattern, name):
            return prefix
    if src.source == "openssh" and level in ("error", "crit"):
        return "error: " if level == "error" else "fatal: "
    return ""


def _openssh_decor(name: str, msg: str, text: str, line: int) -> str:
    """OpenSSH's ``*_f`` calls prefix the function name, ``*_r`` append the library error."""
    if name.endswith(("_f", "_fr")):
        func = clex.enclosing_function(text, line) or "%{func}"
        head = ""
        for level_prefix in ("error: ", "fatal: "):
            if msg.startswith(level_prefix):
                head, msg = level_prefix, msg[len(level_prefix) :]
        msg = f"{head}{func}: {msg}"
    if name.endswith(("_r", "_fr")):
        msg += ": %s"
    return msg


def labelled(
    src: Source, package: str, origin: str, template: str, level: str, alert: str, from_path: bool
) -> dict[str, str]:
    over = apply_override(src.source, template)
    if over is not None:
        label, reason = over
        reason = f"override: {reason}"
    else:
        label, reason = label_template(template, level, alert, hints=not from_path)
    return {
        "source": src.source,
        "package": package,
        "origin": origin,
        "template": template,
        "level": level,
        "label": label,
        "reason": reason,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "src_root", type=Path, help="directory holding the unpacked Debian source packages"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="harvest only these sources")
    ap.add_argument(
        "--max-level-alerts",
        type=int,
        default=MAX_LEVEL_ALERTS,
        help="per source, at most this many alerts labelled by level alone",
    )
    args = ap.parse_args(argv)
    summary: list[tuple[str, str, int, int, dict[str, int]]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for src in SOURCES:
        if args.only and src.source not in args.only:
            continue
        try:
            found = list(harvest_source(args.src_root, src))
        except FileNotFoundError as exc:
            print(f"skip {src.source}: {exc}", file=sys.stderr)
            continue
        rows = cap_level_alerts(found, args.max_level_alerts)
        with (args.out / f"{src.source}.jsonl").open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["label"]] = counts.get(row["label"], 0) + 1
        summary.append(
            (src.source, rows[0]["package"] if rows else src.package, len(found), len(rows), counts)
        )
        print(f"{src.source}: {len(found)} found, {len(rows)} kept {dict(sorted(counts.items()))}")
    write_summary(args.out.parent / "COUNTS.md", summary)
    return 0


def cap_level_alerts(rows: list[dict[str, str]], cap: int) -> list[dict[str, str]]:
    """Keep every normal and every rule/override/expansion alert, and per category at most
    ``cap`` alerts labelled by level alone (most are internal error paths: "Failed to allocate event
    source"); which ones is decided by a hash of the text, so reruns keep the same set."""
    drop: set[int] = set()
    for label in {r["label"] for r in rows} - {"normal"}:
        by_level = [r for r in rows if r["label"] == label and r["reason"].startswith("level:")]
        ranked = sorted(by_level, key=lambda r: hashlib.sha1(r["template"].encode()).hexdigest())
        drop.update(id(r) for r in ranked[cap:])
    return [r for r in rows if id(r) not in drop]


def write_summary(path: Path, summary: list[tuple[str, str, int, int, dict[str, int]]]) -> None:
    labels = [
        "normal",
        "hardware",
        "thermal",
        "power",
        "network",
        "storage",
        "security",
        "software",
        "sensor",
    ]
    lines = [
        "# Harvested templates per source",
        "",
        "Written by `python -m nanomodel.harvest.run`; do not edit by hand. *found* is every",
        "distinct non-debug message of the source's log calls, *kept* what the templates file",
        "holds (alerts labelled by level alone are capped per source and category; see",
        "LABELLING.md).",
        "",
        "| source | package | found | kept | " + " | ".join(labels) + " |",
        "|---|---|---|---|" + "---|" * len(labels),
    ]
    # keep the rows of sources not harvested in this run (``--only``), in SOURCES order
    fresh = {row[0]: row for row in summary}
    old = {}
    if path.exists():
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 4 + len(labels) and cells[2].isdigit():
                counts = {k: int(v) for k, v in zip(labels, cells[4:], strict=True) if int(v)}
                old[cells[0]] = (cells[0], cells[1], int(cells[2]), int(cells[3]), counts)
    order = [s.source for s in SOURCES]
    summary = [fresh.get(name) or old[name] for name in order if name in fresh or name in old]
    total: dict[str, int] = {}
    for source, package, found, kept, counts in summary:
        lines.append(
            f"| {source} | {package} | {found} | {kept} | "
            + " | ".join(str(counts.get(k, 0)) for k in labels)
            + " |"
        )
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    lines.append(
        f"| **all** | | {sum(s[2] for s in summary)} | {sum(s[3] for s in summary)} | "
        + " | ".join(str(total.get(k, 0)) for k in labels)
        + " |"
    )
    # sections other harvesters write after the table (the public samples') stay
    old_text = path.read_text() if path.exists() else ""
    tail = old_text[old_text.find("\n## ") :] if "\n## " in old_text else ""
    path.write_text("\n".join(lines) + "\n" + tail)


if __name__ == "__main__":
    raise SystemExit(main())
