"""Sensor readings for the corpus: key=value and JSON payloads, as MQTT sensor feeds send them.

**The status-word rule.** Digits are masked before the model sees a line, so a value
alone (``temp_c=93.2``) cannot say whether something is wrong. What a reading *can* say
is its status word or flag, and that decides the label:

- ``status=ok`` (``normal``, ``running``, ``idle``...), a flag that is off
  (``leak=false``, ``alarm=no``), or no status at all → ``normal``;
- a status word or a flag that is on (``overheat=true``) names the category:
  over-temperature words → ``thermal``; battery/supply words → ``power``; the
  equipment being watched failing (vibration, leak, stall, jam) → ``hardware``;
  tampering → ``security``; lost communication → ``network``; full or failing local
  storage → ``storage``; firmware crashes/restarts → ``software``;
- a generic alarm word that names no kind (``fault``, ``error``, ``alarm``,
  ``failure``) or a probe problem (``sensor_error``, ``out_of_range``) → ``sensor``:
  the sensor node itself reports trouble, and that is where triage starts.

Numeric flags (``alarm=1``) are indistinguishable from ``alarm=0`` after masking; use
words (true/false, on/off, a status string) to be recognised.

A reading is the same fields for every label (values from one distribution), so the
only thing that separates the labels is the status word.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

STATUS_WORDS: dict[str, list[str]] = {
    "normal": ["ok", "OK", "normal", "nominal", "running", "idle", "online", "good", "ready",
               "standby", "active", "Ok"],
    "thermal": ["overheat", "over_temp", "overtemp", "high_temp", "temp_high", "too_hot",
                "thermal_trip", "overheated", "OVERTEMP", "temp_alarm", "OVERHEAT"],
    "power": ["low_battery", "battery_low", "low_batt", "undervoltage", "under_voltage",
              "overvoltage", "power_fail", "power_loss", "mains_lost", "on_battery",
              "overcurrent", "brownout", "BATT_LOW", "LOW_BATTERY"],
    "hardware": ["vibration_alarm", "vib_alarm", "high_vibration", "bearing_fault",
                 "motor_stall", "stalled", "jammed", "blocked", "leak", "leak_detected",
                 "fan_fail", "pump_fail", "valve_stuck", "motor_fault", "VIBRATION_ALARM",
                 "LEAK"],
    "sensor": ["sensor_fault", "sensor_error", "probe_error", "probe_disconnected",
               "read_error", "no_reading", "out_of_range", "stuck", "invalid", "calib_error",
               "crc_error", "fault", "error", "alarm", "failure", "FAULT", "ERROR", "ALARM"],
    "security": ["tamper", "tamper_detected", "intrusion", "door_forced", "enclosure_open",
                 "unauthorized", "TAMPER"],
    "network": ["comm_lost", "offline", "link_down", "no_signal", "comm_error",
                "gateway_unreachable", "comm_timeout", "OFFLINE"],
    "storage": ["disk_full", "sd_error", "storage_full", "log_full", "flash_error",
                "sd_missing"],
    "software": ["watchdog_reset", "fw_crash", "restart_loop", "task_overrun",
                 "firmware_error", "config_error"],
}

# Boolean flags named after a condition: on → that label, off → normal.
FLAGS: dict[str, list[str]] = {
    "thermal": ["overheat", "overtemp", "temp_alarm", "high_temp"],
    "power": ["low_batt", "low_battery", "on_battery", "undervoltage", "power_fail"],
    "hardware": ["leak", "vib_alarm", "stall", "jam", "fan_fail"],
    "sensor": ["fault", "alarm", "sensor_fault", "probe_err"],
    "security": ["tamper", "intrusion"],
    "network": ["offline", "comm_lost"],
}
_ON = ["true", "yes", "on", "True", "TRUE"]
_OFF = ["false", "no", "off", "False", "none"]
_STATUS_KEYS = ["status", "status", "status", "state", "health", "st", "condition"]
_ALARM_KEYS = ["alarm", "alert", "fault_code", "event"]  # only ever carry a problem...
_NO_ALARM = ["none", "no", "clear", "-"]  # ...or say there is none

# Field name -> value: (low, high, decimals) drawn uniformly, or a list of words.
_Spec = tuple[float, float, int] | list[str]
_FIELDS: dict[str, dict[str, _Spec]] = {
    "pump": {"temp_c": (30, 110, 1), "humidity": (25, 60, 0), "vib_rms": (0.05, 5, 2),
             "flow_lpm": (0, 60, 1), "pressure_bar": (0, 6, 1), "rpm": (0, 3000, 0),
             "mode": ["auto", "manual", "remote"]},
    "env": {"temp_c": (-5, 45, 1), "humidity": (10, 95, 0), "co2_ppm": (380, 2500, 0),
            "pm25": (1, 80, 0), "pressure_hpa": (960, 1040, 1)},
    "tank": {"level_cm": (0, 300, 0), "temp_c": (2, 40, 1), "valve": ["open", "closed"]},
    "meter": {"v": (190, 250, 1), "a": (0, 40, 2), "kwh": (0, 99999, 1), "pf": (0.7, 1, 2),
              "hz": (49.8, 50.2, 2)},
    "node": {"batt_v": (2.8, 4.2, 2), "rssi": (-120, -40, 0), "snr": (-10, 12, 1),
             "moisture": (0, 60, 0), "uptime_s": (0, 10**7, 0)},
    "motor": {"current_a": (0, 30, 1), "rpm": (0, 3000, 0), "temp_c": (20, 120, 1),
              "torque_nm": (0, 90, 1)},
    "cold": {"temp_c": (-25, 15, 1), "door": ["open", "closed"], "compressor": ["on", "off"],
             "defrost": ["on", "off"]},
}


def _value(spec: _Spec, rng: random.Random) -> str | float | int:
    if isinstance(spec, list):
        return rng.choice(spec)
    low, high, decimals = spec
    return rng.randint(int(low), int(high)) if decimals == 0 else \
        round(rng.uniform(low, high), decimals)


_TOPIC_ROOTS = ["sensors", "sensors", "site/plant2", "devices", "tele", "factory/line1", "farm",
                "building/b2"]
_DEVICE_NAMES = ["pump", "env", "tank", "meter", "node", "motor", "cold", "boiler", "air", "dev"]
_TOPIC_LEAVES = ["state", "telemetry", "data", "reading", "SENSOR", "status"]


_META_WORDS = ["prod", "stage", "eu-1", "main", "worker-2", "io", "core", "plant2", "north",
               "default", "rx", "edge", "a", "b"]
_META_KEYS = ["seq", "id", "fw", "ver", "version", "build", "thread", "module", "region", "env",
              "node", "instance", "trace_id", "span_id", "uptime", "zone", "tenant", "src",
              "msg_id", "ts", "time", "unit", "origin", "tags", "line", "file", "rev", "chan"]


def metadata(rng: random.Random, most: int = 4) -> list[tuple[str, str | float | int]]:
    """Neutral fields that feeds and log shippers add around the content: ids, sequence
    numbers, versions, timestamps, thread and module names. Training sees them around
    every label, so they carry no evidence either way."""
    out: list[tuple[str, str | float | int]] = []
    for key in rng.sample(_META_KEYS, rng.randint(1, most)):
        kind = rng.random()
        if kind < 0.3:
            value: str | float | int = rng.randint(0, 10 ** rng.randint(1, 13))
        elif kind < 0.5:
            value = f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}"
        elif kind < 0.7:
            value = f"{rng.getrandbits(rng.choice([16, 32, 64])):x}"
        else:
            value = rng.choice(_META_WORDS)
        out.append((key, value))
    return out


@dataclass(frozen=True)
class Reading:
    """One reading: topic, fields in order (the status field included), and its label."""

    topic: str
    fields: list[tuple[str, str | float | int]]
    label: str


def make_reading(label: str, rng: random.Random) -> Reading:
    kind = rng.choice(list(_FIELDS))
    specs = _FIELDS[kind]
    names = rng.sample(list(specs), rng.randint(2, len(specs)))
    fields: list[tuple[str, str | float | int]] = [(n, _value(specs[n], rng)) for n in names]
    device = f"{rng.choice(_DEVICE_NAMES)}-{rng.randint(1, 60):02d}"
    leaf = rng.choice([kind, *_TOPIC_LEAVES])
    topic = f"{rng.choice(_TOPIC_ROOTS)}/{device}/{leaf}"
    if label != "normal" and label in FLAGS and rng.random() < 0.25:
        fields.append((rng.choice(FLAGS[label]), rng.choice(_ON)))
    elif label == "normal" and rng.random() < 0.25:
        flag_label = rng.choice(list(FLAGS))
        fields.append((rng.choice(FLAGS[flag_label]), rng.choice(_OFF)))
        if rng.random() < 0.5:
            fields.append(("status", rng.choice(STATUS_WORDS["normal"])))
    elif label != "normal" or rng.random() < 0.8:  # some healthy readings carry no status
        alarm_key = rng.random() < 0.15
        key = rng.choice(_ALARM_KEYS if alarm_key else _STATUS_KEYS)
        word = rng.choice(_NO_ALARM if alarm_key and label == "normal" else
                          STATUS_WORDS[label])
        fields.insert(rng.randint(0, len(fields)) if rng.random() < 0.3 else len(fields),
                      (key, word))
    if rng.random() < 0.3:
        for meta in metadata(rng, 2):
            fields.insert(rng.randint(0, len(fields)), meta)
    return Reading(topic, fields, label)


def _kv(fields: list[tuple[str, str | float | int]]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields)


def _json_payload(fields: list[tuple[str, str | float | int]]) -> str:
    return json.dumps(dict(fields), separators=(",", ":"))


# ---- how feeds frame a reading (training) ------------------------------------------------

def mqtt_kv(r: Reading, rng: random.Random) -> str:
    """As the agent's MQTT source shows a key=value payload: ``<topic>: k=v ...``."""
    return f"{r.topic}: {_kv(r.fields)}"


def mqtt_json(r: Reading, rng: random.Random) -> str:
    return f"{r.topic}: {_json_payload(r.fields)}"


def bare_kv(r: Reading, rng: random.Random) -> str:
    """The payload alone (MQTT source with ``include_topic = false``, or a serial feed)."""
    return _kv(r.fields)


def bare_json(r: Reading, rng: random.Random) -> str:
    return _json_payload(r.fields)


# ---- held out: never trained on ----------------------------------------------------------

def influx(r: Reading, rng: random.Random) -> str:
    """InfluxDB line protocol: measurement,tags fields timestamp."""
    _, device, leaf = r.topic.split("/")[-3:]
    values = ",".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}" for k, v in r.fields)
    return f"{leaf},device={device},site={r.topic.split('/')[0]} {values} " \
           f"{rng.randint(1_600_000_000, 1_800_000_000)}{rng.randint(0, 10**9 - 1):09d}"


def colon_pairs(r: Reading, rng: random.Random) -> str:
    """``<topic> temp_c: 41.5, status: ok`` (YAML-ish, some gateways' text payloads)."""
    return f"{r.topic} " + ", ".join(f"{k}: {v}" for k, v in r.fields)


ReadingStyle = Callable[[Reading, random.Random], str]
READING_STYLES: dict[str, ReadingStyle] = {
    "mqtt-kv": mqtt_kv, "mqtt-json": mqtt_json, "bare-kv": bare_kv, "bare-json": bare_json,
    "influx": influx, "colon-pairs": colon_pairs,
}
TRAIN_READING_STYLES = ["mqtt-kv", "mqtt-json", "bare-kv", "bare-json"]
HELDOUT_READING_STYLES = ["influx", "colon-pairs"]


def reading_message(label: str, rng: random.Random) -> str:
    """A reading as a daemon logs it inside a log line (``sensord[..]: temp_c=.. status=..``)."""
    return _kv(make_reading(label, rng).fields)
