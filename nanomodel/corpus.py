"""Generated, labeled device logs: many devices, daemons and message styles.

A line is a category's message (from :mod:`nanomodel.templates`, placeholders
filled with plausible values) wrapped in a *style*: how a given device family
writes its logs. Training uses :data:`TRAIN_STYLES`; :data:`HELDOUT_STYLES` are
never trained on, so evaluating on them measures whether the model learned the
messages rather than the framing. Severity tags correlate with the category but
not perfectly (real daemons log alerts at ``info`` and chatter at ``warning``).

:func:`inverter_lines` makes a format the default model never sees (a solar
inverter vendor's semicolon records with German texts) for fine-tuning tests
and demos. Everything is driven by a seeded ``random.Random``: same seed, same corpus.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nanomodel.daemons import FAMILIES, FAMILY_FILLERS
from nanomodel.readings import (
    HELDOUT_READING_STYLES,
    READING_STYLES,
    TRAIN_READING_STYLES,
    make_reading,
    metadata,
    reading_message,
)
from nanomodel.templates import DAEMONS, FILLERS, LABELS, MESSAGES

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DEVICES = ["gw", "cam", "plc", "meter", "rpi", "hvac", "kiosk", "pump", "edge"]
_SITES = ["site4", "plant2", "north", "dock", "lab"]
_SEVERITY_ALERT = ["err", "warning", "crit", "error", "warning"]
_SEVERITY_NORMAL = ["info", "notice", "info", "debug"]
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_ALL_FILLERS = {**FILLERS, **FAMILY_FILLERS}
# Share of lines that come from a daemon family (daemon and message belong together)
# rather than from the per-category templates with any daemon; share of log lines whose
# message is a sensor reading logged by a daemon; share of lines that are bare readings
# (an MQTT feed) when the style list has reading styles.
FAMILY_SHARE = 0.5
LOGGED_READING_SHARE = 0.06
READING_SHARE = 0.2
_READING_DAEMONS = ["sensord", "modbusd", "collector", "pumpd", "edge-agent", "loggerd"]


@dataclass(frozen=True)
class Example:
    """One labeled line."""

    text: str
    label: str
    style: str


@dataclass(frozen=True)
class _Event:
    host: str
    daemon: str
    pid: int
    severity: str
    message: str
    ts: tuple[int, int, int, int, int, int, int]  # y, mo, d, h, mi, s, ms


def _number_filler(name: str, rng: random.Random) -> str | None:
    r = rng
    numeric: dict[str, Callable[[], str]] = {
        "n": lambda: str(r.randint(0, 99)),
        "pid": lambda: str(r.randint(100, 32000)),
        "port": lambda: str(r.choice([22, 443, 1883, 8883, 502, r.randint(1024, 65000)])),
        "ip": lambda: f"{r.choice([10, 192, 172])}.{r.randint(0, 255)}.{r.randint(0, 255)}."
                      f"{r.randint(1, 254)}",
        "temp": lambda: f"{r.uniform(25, 62):.1f}",
        "temp_hi": lambda: f"{r.uniform(85, 110):.1f}",
        "temp_lim": lambda: str(r.choice([80, 85, 90])),
        "volt": lambda: f"{r.uniform(4.9, 5.2):.2f}",
        "volt_lo": lambda: f"{r.uniform(3.9, 4.6):.2f}",
        "volt_hi": lambda: f"{r.uniform(26, 31):.1f}",
        "pct": lambda: str(r.randint(20, 100)),
        "pct_low": lambda: str(r.randint(1, 60)),
        "pct_hi": lambda: str(r.randint(91, 100)),
        "rpm": lambda: str(r.randint(1200, 5200)),
        "mhz": lambda: str(r.choice([600, 800, 1000, 1200])),
        "ms": lambda: str(r.randint(2, 30000)),
        "sig": lambda: str(r.randint(40, 75)),
        "sig_bad": lambda: str(r.randint(105, 120)),
        "speed": lambda: str(r.choice([100, 1000])),
        "mem": lambda: str(r.choice([256, 512, 1024, 2048])),
        "slot": lambda: str(r.randint(0, 3)),
        "pin": lambda: str(r.randint(2, 27)),
        "sector": lambda: str(r.randint(1000, 9_999_999)),
        "value": lambda: f"{r.uniform(0, 100):.2f}",
        "value_bad": lambda: r.choice(["-999.0", "6553.5", "NaN", "-273.2", "99999"]),
        "hex": lambda: f"{r.getrandbits(48):x}",
        "ver": lambda: f"{r.randint(1, 4)}.{r.randint(0, 12)}.{r.randint(0, 9)}",
        "nmts": lambda: f"{r.randint(1_600_000_000, 1_800_000_000)}.{r.randint(0, 9999):04d}",
        "mac": lambda: ":".join(f"{r.getrandbits(8):02x}" for _ in range(6)),
        "hex4": lambda: f"{r.getrandbits(16):04x}",
        "b64": lambda: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789+/") for _ in range(r.randint(8, 43))),
    }
    numeric["ip2"] = numeric["ip"]
    numeric["hex2"] = numeric["hex3"] = numeric["hex"]
    numeric["ver2"] = numeric["ver"]
    make = numeric.get(name)
    return make() if make else None


def fill(template: str, rng: random.Random) -> str:
    """Replace each ``{placeholder}`` with a plausible value."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        value = _number_filler(name, rng)
        if value is not None:
            return value
        if name in _ALL_FILLERS:
            choice = rng.choice(_ALL_FILLERS[name])
            return fill(choice, rng) if "{" in choice else choice
        raise KeyError(f"unknown placeholder {{{name}}} in template {template!r}")

    return _PLACEHOLDER.sub(one, template.replace("{{", "\x00").replace("}}", "\x01")) \
        .replace("\x00", "{").replace("\x01", "}")


# ---- styles: how device families frame a message --------------------------------------

def _syslog(e: _Event, r: random.Random) -> str:
    _y, mo, d, h, mi, s, _ = e.ts
    return f"{_MONTHS[mo - 1]} {d:2d} {h:02d}:{mi:02d}:{s:02d} {e.host} {e.daemon}[{e.pid}]: " \
           f"{e.message}"


def _kernel(e: _Event, r: random.Random) -> str:
    return f"[{r.uniform(1, 900000):12.6f}] {e.message}"


def _journal_iso(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, s, _ = e.ts
    return f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}+0000 {e.host} {e.daemon}[{e.pid}]: " \
           f"{e.message}"


def _logfmt(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, s, ms = e.ts
    msg = e.message.replace('"', "'")
    return f'ts={y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z level={e.severity} ' \
           f'device={e.host} src={e.daemon} msg="{msg}"'


def _json(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, s, _ = e.ts
    return json.dumps({"time": f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}",
                       "level": e.severity, "host": e.host, "app": e.daemon,
                       "message": e.message})


def _bracket(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, s, ms = e.ts
    return f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d},{ms:03d} [{e.severity.upper():7s}] " \
           f"[{e.daemon}] {e.message}"


def _vendor_pipe(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, _s, _ = e.ts
    sev = e.severity[0].upper()
    return f"{e.host.upper()}|{d:02d}.{mo:02d}.{y} {h:02d}:{mi:02d}|{sev}|{e.daemon}|{e.message}"


def _esp_idf(e: _Event, r: random.Random) -> str:
    """ESP32 firmware (ESP-IDF): level letter, milliseconds since boot, tag."""
    lvl = {"debug": "D", "info": "I", "notice": "I", "warning": "W", "err": "E", "error": "E",
           "crit": "E"}[e.severity]
    return f"{lvl} ({r.randint(10, 9_999_999)}) {e.daemon}: {e.message}"


def _envelope(e: _Event, r: random.Random) -> str:
    """The message among random neutral metadata, as JSON or key=value (training only):
    fields around a message must not change what it says."""
    fields: list[tuple[str, str | float | int]] = metadata(r, 6)
    fields.insert(r.randint(0, len(fields)), (r.choice(["level", "lvl", "severity"]),
                                               e.severity))
    fields.insert(r.randint(0, len(fields)), (r.choice(["host", "device", "hostname"]), e.host))
    fields.insert(r.randint(0, len(fields)), (r.choice(["app", "service", "logger"]), e.daemon))
    fields.insert(r.randint(0, len(fields)), (r.choice(["msg", "message", "text", "log"]),
                                               e.message))
    if r.random() < 0.5:
        return json.dumps(dict(fields), separators=(",", ":") if r.random() < 0.5 else None)
    return " ".join(f'{k}="{v}"' if isinstance(v, str) and " " in v else f"{k}={v}"
                    for k, v in fields)


def _rfc5424(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, s, ms = e.ts
    sev = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "err": 3, "error": 3, "crit": 2}
    pri = 8 + sev[e.severity]
    return f"<{pri}>1 {y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z {e.host} " \
           f"{e.daemon} {e.pid} - - {e.message}"


def _logcat(e: _Event, r: random.Random) -> str:
    _, mo, d, h, mi, s, ms = e.ts
    lvl = {"debug": "D", "info": "I", "notice": "I", "warning": "W", "err": "E", "error": "E",
           "crit": "F"}[e.severity]
    return f"{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{ms:03d} {e.pid:5d} {e.pid + 7:5d} " \
           f"{lvl} {e.daemon:<12}: {e.message}"


def _json_nested(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, s, ms = e.ts
    return json.dumps({"@timestamp": f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms:03d}Z",
                       "device": {"id": e.host, "fw": "3.2.1"},
                       "log": {"level": e.severity.upper(), "logger": e.daemon},
                       "event": {"original": e.message}}, separators=(",", ":"))


def _csv(e: _Event, r: random.Random) -> str:
    y, mo, d, h, mi, s, _ = e.ts
    msg = e.message.replace('"', '""')
    return f'{y}{mo:02d}{d:02d}{h:02d}{mi:02d}{s:02d},{e.host},{e.daemon},{e.severity},"{msg}"'


Style = Callable[[_Event, random.Random], str]
STYLES: dict[str, Style] = {
    "syslog": _syslog, "kernel": _kernel, "journal-iso": _journal_iso, "logfmt": _logfmt,
    "json": _json, "bracket": _bracket, "vendor-pipe": _vendor_pipe, "envelope": _envelope,
    "esp-idf": _esp_idf,
    "rfc5424": _rfc5424, "logcat": _logcat, "json-nested": _json_nested, "csv": _csv,
}
TRAIN_LOG_STYLES = ["syslog", "kernel", "journal-iso", "logfmt", "json", "bracket", "vendor-pipe",
                    "envelope", "esp-idf"]
HELDOUT_LOG_STYLES = ["rfc5424", "logcat", "json-nested", "csv"]
TRAIN_STYLES = TRAIN_LOG_STYLES + TRAIN_READING_STYLES
HELDOUT_STYLES = HELDOUT_LOG_STYLES + HELDOUT_READING_STYLES


# Hosts of lines that :func:`frame` wraps (real daemons' text mixed into training).
_FRAME_HOSTS = ["gw-01", "edge-7", "rpi-lab", "node3", "plc-gw", "kiosk-2"]


def _daemon_name(source: str) -> str:
    """A plausible process name for a source (``openssh-server`` -> ``openssh-server``;
    sources named like ``kernel-usb`` log as the kernel)."""
    return "kernel" if source.startswith("kernel") else source.split("/")[-1][:24]


def frame(text: str, label: str, source: str, rng: random.Random) -> str:
    """``text`` in one of the corpus's training log styles (severity follows the
    label 90 % of the time, as in the corpus)."""
    alert = label != "normal"
    noisy = rng.random() < 0.1
    severity = rng.choice(_SEVERITY_ALERT if alert != noisy else _SEVERITY_NORMAL)
    ts = (rng.randint(2023, 2026), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
          rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999))
    event = _Event(host=rng.choice(_FRAME_HOSTS), daemon=_daemon_name(source),
                   pid=rng.randint(100, 32000), severity=severity, message=text, ts=ts)
    return STYLES[rng.choice(TRAIN_LOG_STYLES)](event, rng)


def _daemon_and_message(label: str, rng: random.Random) -> tuple[str, str]:
    families = [f for f in FAMILIES.values() if label in f.messages]
    pick = rng.random()
    if pick < LOGGED_READING_SHARE:
        return rng.choice(_READING_DAEMONS), reading_message(label, rng)
    if families and pick < LOGGED_READING_SHARE + FAMILY_SHARE:
        family = rng.choice(families)
        return rng.choice(family.names), fill(rng.choice(family.messages[label]), rng)
    return rng.choice(DAEMONS[label]), fill(rng.choice(MESSAGES[label]), rng)


def _event(label: str, rng: random.Random) -> _Event:
    host = f"{rng.choice(_DEVICES)}-{rng.choice(_SITES)}-{rng.randint(1, 60):02d}"
    alert = label != "normal"
    noisy = rng.random() < 0.1
    severities = _SEVERITY_ALERT if alert != noisy else _SEVERITY_NORMAL
    ts = (rng.randint(2023, 2026), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
          rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999))
    daemon, message = _daemon_and_message(label, rng)
    return _Event(host=host, daemon=daemon, pid=rng.randint(100, 32000),
                  severity=rng.choice(severities), message=message, ts=ts)


def generate(count: int, seed: int, styles: list[str] | None = None,
             normal_share: float = 0.4) -> list[Example]:
    """``count`` labeled lines; ``normal_share`` of them normal, the rest spread evenly.

    ``styles`` may mix log styles (:data:`STYLES`) and reading styles
    (:data:`nanomodel.readings.READING_STYLES`); with both, :data:`READING_SHARE` of
    the lines are readings."""
    rng = random.Random(seed)
    names = styles or TRAIN_STYLES
    for s in names:
        if s not in STYLES and s not in READING_STYLES:
            known = sorted(STYLES) + sorted(READING_STYLES)
            raise ValueError(f"unknown style {s!r}; known: {known}")
    log_styles = [s for s in names if s in STYLES]
    reading_styles = [s for s in names if s in READING_STYLES]
    alerts = [lab for lab in LABELS if lab != "normal"]
    out: list[Example] = []
    for _ in range(count):
        label = "normal" if rng.random() < normal_share else rng.choice(alerts)
        if reading_styles and (not log_styles or rng.random() < READING_SHARE):
            style = rng.choice(reading_styles)
            text = READING_STYLES[style](make_reading(label, rng), rng)
        else:
            style = rng.choice(log_styles)
            text = STYLES[style](_event(label, rng), rng)
        out.append(Example(text, label, style))
    return out


def default_splits(seed: int = 7, train_size: int = 40000,
                   test_size: int = 4000) -> dict[str, list[Example]]:
    """Train (train styles), test on unseen lines of train styles, and held-out styles."""
    return {
        "train": generate(train_size, seed, TRAIN_STYLES),
        "test_seen_styles": generate(test_size, seed + 1, TRAIN_STYLES),
        "test_heldout_styles": generate(test_size, seed + 2, HELDOUT_STYLES),
    }


# ---- a format the default model never sees ---------------------------------------------

_INVERTER: dict[str, list[str]] = {
    "normal": ["Einspeisung aktiv, P={kw} kW", "MPP-Tracking OK", "Tagesertrag {kwh} kWh",
               "Netzspannung L{ph} {v_ok} V", "Selbsttest bestanden", "Wechselrichter bereit",
               "Kommunikation mit Zaehler hergestellt"],
    "power": ["Netzspannung zu niedrig L{ph} {v_lo} V", "Netzfrequenz ausserhalb Bereich",
              "Netzausfall erkannt, Trennung vom Netz", "DC-Ueberspannung String {ph}",
              "Isolationsfehler PV-Generator"],
    "thermal": ["Uebertemperatur Leistungsteil {t_hi} Grad",
                "Leistungsreduzierung wegen Temperatur", "Kuehlkoerper zu heiss {t_hi} Grad"],
    "hardware": ["Luefter {ph} defekt", "Relais klebt, Selbsttest fehlgeschlagen",
                 "Zwischenkreis Kondensator Fehler", "Display Kommunikation gestoert"],
}


def inverter_lines(count: int, seed: int) -> list[Example]:
    """Semicolon records of a (fictional) solar inverter vendor, texts in German."""
    rng = random.Random(seed)
    labels = list(_INVERTER)
    out: list[Example] = []
    for i in range(count):
        label = "normal" if rng.random() < 0.5 else rng.choice(labels[1:])
        text = rng.choice(_INVERTER[label]).format(
            kw=f"{rng.uniform(0.5, 9.9):.1f}", kwh=f"{rng.uniform(2, 60):.1f}",
            ph=rng.randint(1, 3), v_ok=rng.randint(225, 238), v_lo=rng.randint(150, 195),
            t_hi=rng.randint(80, 95))
        code = f"{'E' if label != 'normal' else 'S'}{rng.randint(100, 999)}"
        out.append(Example(f"WR{rng.randint(1, 9)};{20240301 + i % 28};{code};{text}", label,
                           "inverter"))
    return out


def write_jsonl(path: Path, examples: list[Example]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps({"text": ex.text, "label": ex.label}, ensure_ascii=False) + "\n")
