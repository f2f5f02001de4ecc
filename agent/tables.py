"""Readable tables for `nanofleet-agent query` (``--json`` prints the raw answer)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from contract.display import printable


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.0f}"
    # Log lines, sources and labels are whoever wrote the log's text: an escape sequence in
    # one must not drive the technician's terminal (erase the alert above, forge a row;
    # review, December 2026). The fleet CLI's tables do the same.
    text = printable(str(v))
    return text if len(text) <= 60 else text[:57] + "..."


def _why(reason: str) -> str:
    """An alert reason's words and level, as the pipeline writes them (agent.pipeline
    ``_why``: ``... (logged at err); why: checksum +4.1, ...``), without the threshold."""
    level = reason.split("(logged at ", 1)[1].split(")", 1)[0] if "(logged at " in reason \
        else ""
    words = reason.split("; why: ", 1)[1] if "; why: " in reason else ""
    return "; ".join(p for p in (level, words) if p) or "-"


def _ts(v: float) -> str:
    return dt.datetime.fromtimestamp(v).strftime("%Y-%m-%d %H:%M:%S")


def kv(doc: dict[str, Any]) -> str:
    width = max((len(k) for k in doc), default=0)
    return "\n".join(f"{k.ljust(width)}  {_fmt(v)}" for k, v in doc.items())


def render(cmd: str, result: Any) -> str:
    if cmd == "status":
        doc = {k: v for k, v in result.items() if k != "models"}
        models = table(result.get("models", []), ["slot", "name", "version", "runtime"])
        return kv(doc) + "\n\n" + models
    if cmd == "models":
        return table(result, ["slot", "name", "version", "label", "runtime", "sha256"])
    if cmd == "sources":
        return table(result, ["name", "kind", "alive", "lines_read", "last_error"])
    if cmd == "metrics":
        return kv({"uptime_s": result["uptime_s"], **result["counters"], **result["gauges"]})
    if cmd == "recent_alerts":
        rows = [{"time": _ts(a["item"]["ts"]), "label": a["item"]["label"],
                 "score": a["item"]["score"], "source": a["item"]["source"],
                 "why": _why(a.get("reason", "")), "text": a["item"]["text"]} for a in result]
        return table(rows, ["time", "label", "score", "source", "why", "text"])
    if cmd == "mutes":
        head = kv({k: v for k, v in result.items() if k != "mutes"})
        # match: "whole" mutes lines of this shape, "start" lines whose shape starts with it
        rows = [{**m, "match": "start" if m.get("prefix") else "whole",
                 "source": m["source"] or "(any)", "expires": _ts(m["expires"])}
                for m in result.get("mutes", [])]
        return head + "\n\n" + table(rows, ["id", "match", "shape", "source", "expires",
                                            "reason"])
    if cmd == "classify":
        if any("level" in row for row in result):
            result = [{**row, "anomaly": f"{row['anomaly']} (words {row['words_anomaly']}, "
                       f"{row['level']})"} for row in result]
        if any("why" in row for row in result):
            result = [{**row, "why": ", ".join(f"{w['word']} {w['weight']:+.2f}"
                                                for w in row.get("why", []))} for row in result]
            return table(result, ["label", "score", "anomaly", "why", "text"])
        return table(result, ["label", "score", "anomaly", "text"])
    if isinstance(result, dict):
        return kv(result)
    return str(result)
