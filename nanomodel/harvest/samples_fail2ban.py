"""fail2ban's test logs as a labelled public log sample (``samples/<source>.jsonl``).

Usage (no network: reads a local git directory of fail2ban's repository)::

    python -m nanomodel.harvest.samples_fail2ban /work/.mirror/fail2ban+fail2ban/repo

fail2ban (GPL-2.0-or-later) ships real log lines its users contributed, one file per
filter (``fail2ban/tests/files/logs/<filter>``), each line annotated by fail2ban's
authors with a comment before it: ``# failJSON: { ..., "match": true }`` (the filter bans
on that line) or ``"match": false``, or nothing. This module reads those files with
``git show`` at the commit given, keeps every distinct line once as it appears in the log
(syslog head included) and labels it:

* ``match: true`` → ``security`` (fail2ban's filter bans on it), unless a reviewed
  decision in :mod:`nanomodel.harvest.samples_fail2ban_review` says otherwise;
* any other line → its source's template when one matches
  (:class:`nanomodel.harvest.match.Matcher`, as captured lines are), else the reviewed
  decision for its message shape; a line nobody decided is an error, so every row has a
  reason a person wrote.

Lines that only exercise fail2ban's parser (:data:`..review.PARSER_EXERCISE`) are left
out, as are filters of web applications' own logs (:data:`..review.FILTER_SOURCE` maps
them to ``None``) and lines from the hosts of loghub's SSH and Linux logs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nanomodel import realtext
from nanomodel.harvest.capture_io import MAX_PER_SHAPE, message_body, write_rows_by_source
from nanomodel.harvest.match import Matcher, request_rule
from nanomodel.harvest.samples_fail2ban_review import (
    DECISIONS,
    FILTER_SOURCE,
    LOGHUB_HOSTS,
    PARSER_EXERCISE,
    Decision,
    what_it_bans,
)

LOGS = "fail2ban/tests/files/logs"
DATA = realtext.DATA / "samples"
_ANNOTATION = re.compile(r"^#+ ?failJSON:(?P<json>.+)$")
# The syslog head: a BSD or RFC 3339 time, an optional "<fac.prio>" (FreeBSD's -v), a host
_TIME = (
    r"(?:\w{3} +\d{1,2} \d\d:\d\d:\d\d(?: \d{4})?"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
)
_SYSLOG = re.compile(
    rf"^(?P<head>{_TIME} (?:<[\w.]+> )?(?:(?P<host>[\w.-]+) )?)?"
    r"(?P<tag>[A-Za-z][\w./-]*)(?:\[\d+\])?: ?(?P<msg>.*)$"
)
# journal output without the time ("srv sshd[13709]: ..."), as fail2ban's sshd-journal
_HOST_TAG = re.compile(r"^(?P<host>[\w.-]+) (?P<tag>[A-Za-z][\w./-]*)\[\d+\]: ?(?P<msg>.*)$")
_SHAPE = re.compile(r"\b0x[0-9a-fA-F]+\b|[0-9a-fA-F]*\d[0-9a-fA-F]*|\d+")


@dataclass(frozen=True)
class SampleLine:
    """One annotated line of a fail2ban test log."""

    filter: str
    lineno: int
    text: str
    match: bool | None  # None: no failJSON annotation before it


@dataclass
class Tally:
    """What happened to the lines read, for the report and SOURCES.md."""

    read: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    decided: Counter[str] = field(default_factory=Counter)  # how each row got its label
    skipped: Counter[str] = field(default_factory=Counter)  # why a line was left out


def parse_log(filter_name: str, text: str) -> list[SampleLine]:
    """The log lines of one test file with the ``match`` of the failJSON before each.

    As fail2ban's own test runner reads it: an annotation applies to the next line only;
    other ``#`` lines and blank lines are comments.
    """
    out: list[SampleLine] = []
    pending: bool | None = None
    annotated = False
    for n, line in enumerate(text.splitlines(), 1):
        ann = _ANNOTATION.match(line)
        if ann is not None:
            data = json.loads(ann.group("json"))
            pending, annotated = bool(data.get("match", False)), True
            continue
        if line.startswith("#") or not line.strip():
            continue
        out.append(SampleLine(filter_name, n, line.rstrip("\r\n"),
                              pending if annotated else None))
        pending, annotated = None, False
    return out


def shape(text: str) -> str:
    """The line with its numbers (and hex ids) masked: one message shape."""
    return _SHAPE.sub("0", re.sub(r"\[\d+\]", "", text))


def syslog_parts(text: str) -> tuple[str, str, str]:
    """(host, tag, message) of a syslog line; ("", "", text) for any other line."""
    m = _SYSLOG.match(text) or _HOST_TAG.match(text)
    if m is None:
        return "", "", text
    return m.group("host") or "", m.group("tag"), m.group("msg")


def decision_for(source: str, text: str, match_true: bool) -> Decision | None:
    """The first reviewed decision for a line (those that overrule fail2ban, for a line
    it bans on)."""
    for d in DECISIONS:
        if (d.source in ("", source) and (d.for_match_true or not match_true)
                and d.pattern.search(text)):
            return d
    return None


class Labeller:
    """The label of one sample line (pure but for the templates it reads once)."""

    def __init__(self, short_commit: str) -> None:
        self.commit = short_commit
        self.matchers: dict[str, Matcher] = {}

    def _matcher(self, source: str) -> Matcher:
        if source not in self.matchers:
            rows = [(t.template, t.label, t.reason, t.origin)
                    for t in realtext.load_templates([source])]
            self.matchers[source] = Matcher(rows, source=source)
        return self.matchers[source]

    def row(self, line: SampleLine, source: str) -> tuple[dict[str, str], str]:
        """The row of a kept line and how its label was decided."""
        _, tag, msg = syslog_parts(line.text)
        body = message_body(source, msg if tag else line.text)
        origin = ""
        decided = decision_for(source, line.text, bool(line.match))
        level = "error" if re.search(r"\berror\b|\[error\]|\bERROR\b", line.text[:120]) \
            else "info"
        if line.match and decided is None:
            label = "security"
            reason = (f"fail2ban's {line.filter} filter bans on it: "
                      f"{what_it_bans(line.filter, line.text)}")
            how = "match-true"
        elif line.match and decided is not None:
            label, reason, how = decided.label, (
                f"fail2ban's {line.filter} filter bans on it, but review: {decided.reason}"
            ), "match-true-reviewed"
        else:
            matcher = self._matcher(source)
            if matcher.match(body) is not None or request_rule(source, msg or line.text):
                label, reason, origin = matcher.label(body, level, "security", line=msg)
                how = "template"
            elif decided is not None:
                label, reason, how = decided.label, f"review: {decided.reason}", "review"
            else:
                raise ValueError(
                    f"{line.filter}:{line.lineno}: no template and no reviewed decision "
                    f"for a line fail2ban does not ban on: {line.text!r} (add a Decision "
                    "to samples_fail2ban_review.DECISIONS)"
                )
        row = {
            "source": source,
            "text": line.text,
            "label": label,
            "reason": reason,
            "template_origin": origin,
            "how": f"fail2ban tests/files/logs/{line.filter}:{line.lineno} ({self.commit})",
            "level": level,
        }
        return row, how


def _key(text: str) -> str:
    """What makes two lines the same message: the text after the syslog head (sshd-journal
    repeats the sshd file's messages behind another head)."""
    _, tag, msg = syslog_parts(text)
    return msg if tag else text


def sample_rows(files: dict[str, str], short_commit: str) -> tuple[list[dict[str, str]], Tally]:
    """Rows for the test logs ``{filter name: file text}``, in filter-name order.

    A message annotated both ways (fail2ban tests it in several modes) counts as banned on.
    Every line nobody decided is listed in one error.
    """
    tally = Tally()
    labeller = Labeller(short_commit)
    parsed = {name: parse_log(name, files[name]) for name in sorted(files)}
    banned = {_key(line.text) for lines in parsed.values() for line in lines if line.match}
    seen: set[tuple[str, str]] = set()
    shapes: Counter[tuple[str, str]] = Counter()
    rows: list[dict[str, str]] = []
    undecided: list[str] = []
    for name, lines in parsed.items():
        tally.read += len(lines)
        family = FILTER_SOURCE.get(name, "")
        if not family:
            tally.skipped[f"filter {name}: " + (
                "not mapped to a source" if name not in FILTER_SOURCE
                else "not a daemon's log (web application, example)")] += len(lines)
            continue
        for line in lines:
            host, _, _ = syslog_parts(line.text)
            if host in LOGHUB_HOSTS:
                tally.skipped[f"host {host} (loghub's SSH/Linux logs)"] += 1
                continue
            why = next((p.reason for p in PARSER_EXERCISE
                        if p.filter in ("", name) and p.pattern.search(line.text)), None)
            if why is not None:
                tally.skipped[f"parser exercise: {why}"] += 1
                continue
            # PAM modules' lines are pam's, whichever program loaded them (as captured)
            source = "pam" if message_body("", _key(line.text)).startswith("pam_") else family
            key = (source, _key(line.text))
            if key in seen:
                tally.skipped["the same message already kept"] += 1
                continue
            seen.add(key)
            shp = (source, shape(key[1]))
            shapes[shp] += 1
            if shapes[shp] > MAX_PER_SHAPE:
                tally.skipped["over the cap of one message shape"] += 1
                continue
            if key[1] in banned and not line.match:
                line = SampleLine(line.filter, line.lineno, line.text, True)
            try:
                row, how = labeller.row(line, source)
            except ValueError as exc:
                undecided.append(str(exc).split(" (add a")[0])
                continue
            tally.decided[how] += 1
            tally.rows[source] = tally.rows.get(source, 0) + 1
            rows.append(row)
    if undecided:
        raise ValueError(f"{len(undecided)} lines have no template and no reviewed decision "
                         "(add a Decision to samples_fail2ban_review.DECISIONS):\n"
                         + "\n".join(undecided))
    return rows, tally


def read_git_logs(git_dir: Path, commit: str = "HEAD") -> tuple[dict[str, str], str]:
    """``{filter: text}`` of the test logs at ``commit`` and the commit's full hash."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(git_dir), *args], check=True,
                              capture_output=True, text=True).stdout

    full = git("rev-parse", f"{commit}^{{commit}}").strip()
    names = git("ls-tree", "--name-only", f"{full}:{LOGS}").split()
    files: dict[str, str] = {}
    for name in names:
        kind = git("cat-file", "-t", f"{full}:{LOGS}/{name}").strip()
        if kind == "blob":  # bsd/ holds unannotated files no filter test reads
            files[name] = git("show", f"{full}:{LOGS}/{name}")
    return files, full


def write_samples(rows: list[dict[str, str]], folder: Path = DATA) -> None:
    """Replace ``folder/<source>.jsonl`` with the rows of each source (and remove the
    files of sources the sample no longer has)."""
    write_rows_by_source(rows, folder, prune=True)


COUNTS_HEADING = "## Public log samples (fail2ban)"


def counts_section(rows: list[dict[str, str]], tally: Tally, commit: str) -> str:
    """The section of COUNTS.md on the sample: lines per source, labels, how decided."""
    filters: dict[str, set[str]] = {}
    per: dict[str, Counter[str]] = {}
    for row in rows:
        name = row["how"].split("/logs/")[1].split(":")[0]
        filters.setdefault(row["source"], set()).add(name)
        c = per.setdefault(row["source"], Counter())
        c["lines"] += 1
        c[row["label"]] += 1
        r = row["reason"]
        c["banned" if r.startswith("fail2ban's") and ", but review" not in r
          else "overruled" if ", but review" in r
          else "template" if row["template_origin"] or r.startswith(("template", "no template"))
          else "review"] += 1
    labels = ["normal", "security", "network"]
    cols = ["lines", *labels, "banned", "overruled", "template", "review"]
    out = [
        COUNTS_HEADING,
        "",
        f"Written by `python -m nanomodel.harvest.samples_fail2ban` from fail2ban {commit};",
        "do not edit by hand. *banned*: fail2ban's filter bans on the line and it is",
        "security; *overruled*: it bans, a reviewed decision says otherwise; *template*: the",
        "source's template decided; *review*: a reviewed decision for a line it does not ban",
        "on (LABELLING.md, \"Public log samples (fail2ban)\").",
        "",
        "| source | filters | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    total: Counter[str] = Counter()
    for source in sorted(per, key=lambda s: (-per[s]["lines"], s)):
        c = per[source]
        total.update(c)
        out.append(f"| {source} | {', '.join(sorted(filters[source]))} | "
                   + " | ".join(str(c[k]) for k in cols) + " |")
    out.append("| **all** | | " + " | ".join(str(total[k]) for k in cols) + " |")
    out += ["", f"Lines read: {tally.read}; left out:", ""]
    out += [f"- {why}: {n}" for why, n in sorted(tally.skipped.items())
            if n and not why.startswith("host ")]
    loghub = sum(n for why, n in tally.skipped.items() if why.startswith("host "))
    out.append(f"- a host of loghub's SSH/Linux logs ({', '.join(sorted(LOGHUB_HOSTS))}): "
               f"{loghub}")
    return "\n".join(out) + "\n"


def write_counts(path: Path, section: str) -> None:
    """Replace (or add) the sample's section of COUNTS.md, keeping the rest."""
    text = path.read_text() if path.exists() else ""
    at = text.find(COUNTS_HEADING)
    if at >= 0:
        end = text.find("\n## ", at + len(COUNTS_HEADING))
        text = text[:at] + (text[end + 1:] if end >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + section)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("git_dir", type=Path, help="a git directory of fail2ban's repository")
    ap.add_argument("--commit", default="HEAD", help="the commit to read (default HEAD)")
    ap.add_argument("--out", type=Path, default=DATA, help="folder for <source>.jsonl")
    ap.add_argument("--counts", type=Path, default=realtext.DATA / "COUNTS.md",
                    help="the COUNTS.md whose fail2ban section to write")
    args = ap.parse_args(argv)
    files, full = read_git_logs(args.git_dir, args.commit)
    rows, tally = sample_rows(files, full[:8])
    write_samples(rows, args.out)
    write_counts(args.counts, counts_section(rows, tally, full))
    print(f"fail2ban {full}: {tally.read} lines read, {len(rows)} rows")
    for source, n in sorted(tally.rows.items()):
        labels = Counter(r["label"] for r in rows if r["source"] == source)
        print(f"  {source}: {n} " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    for how, n in tally.decided.most_common():
        print(f"  decided by {how}: {n}")
    for why, n in tally.skipped.most_common():
        print(f"  left out, {why}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
