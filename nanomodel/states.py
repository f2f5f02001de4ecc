"""State lines for the corpus: a thing and the state it is in, in pairs that differ by one word.

Devices' own programs announce states in a few words: ``wlan0: link is down``, ``mqtt
disconnected``, ``AC power offline``, ``fan1 stopped (0 rpm)``, ``GPS fix lost``. Real
daemons' message text (:mod:`nanomodel.realtext`) has few such bare lines, and a model
trained mostly on it reads them by the rarest word: measured in December 2026, the model
shipped before these lines found 5 of 18 such alerts and flagged `eth0: link up`
(docs/model.md "State lines").

**The state-word rule.** Like a sensor reading's status word (:mod:`nanomodel.readings`),
the *state* decides the label, not the thing: every subject of a kind is rendered with
healthy states and with alarm states, in the same frames, so that the only evidence the
model can learn is the state word next to its subject (``link up`` / ``link down``,
``mqtt connected`` / ``mqtt disconnected``). A kind's alarm states carry its category.
Healthy states also say what is *not* wrong (``no fault``, ``not throttled``): alarm
states are full of ``no`` and ``not``, and without these the model read every negation
as trouble (measured: Apache's `File does not exist` flagged). Ambiguous states are left
out on purpose: a pump ``stopped`` may be a finished cycle and a door ``opened`` may be the
technician, so neither is an alarm here (a fan that "stopped" was one, measured: systemd's
own `Stopped ...` lines then read as alarms; a fan *stalls*, and a process "stopped on
request" is healthy).

**Peers are not the device.** The other end of a connection coming and going is a server's
routine (``pop3-login: Disconnected``, ``client 10.0.0.7 disconnected``, ``Connection
closed by peer``), while the device's *own* uplink going is an alarm. :data:`PEER` says the
same state words about clients, users and sessions, always healthy, so that the model
learns the subject of ``disconnected`` and not the word alone (measured: without it, the
state lines turned dovecot's and sshd's client disconnects into alerts).

Everything is drawn from a seeded ``random.Random``: same seed, same lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nanomodel.corpus import Example, fill, frame


@dataclass(frozen=True)
class StateKind:
    """Things of one kind, the states that are healthy, and the alarm states and their label."""

    subjects: list[str]
    healthy: list[str]
    alarm: list[str]
    label: str


KINDS: dict[str, StateKind] = {
    "link": StateKind(
        ["{iface}", "{iface}: link", "link on {iface}", "interface {iface}", "port {n}",
         "Network device '{iface}'", "Interface '{ifname}'", "{iface} carrier", "ethernet",
         "wifi", "wlan", "uplink"],
        ["up", "link up", "link is up", "is now up", "carrier on", "carrier acquired",
         "gained carrier", "link beat detected", "link becomes ready", "connected",
         "associated", "up ({speed}/Full)", "link up, {speed} Mbps full duplex",
         "up, no errors", "not flapping"],
        ["down", "link down", "link is down", "is now down", "carrier off", "carrier lost",
         "lost carrier", "link beat lost", "no carrier", "disconnected",
         "link down, cable unplugged", "link flapping"],
        "network"),
    "session": StateKind(
        ["mqtt", "mqtt uplink", "broker connection", "vpn", "vpn tunnel", "wireguard peer",
         "cloud link", "websocket", "lte", "modem", "cellular", "uplink to {host}",
         "connection to {host}", "opc-ua session", "modbus tcp", "lorawan backhaul"],
        ["connected", "reconnected", "established", "up", "online", "attached", "registered",
         "connection restored", "session established", "handshake complete",
         "connected to {host}", "back online", "no packet loss", "not timed out"],
        ["disconnected", "connection lost", "down", "offline", "detached", "deregistered",
         "dropped", "timed out", "unreachable", "handshake failed", "connection refused",
         "keepalive timeout", "lost connection to {host}"],
        "network"),
    "supply": StateKind(
        ["AC power", "mains", "mains power", "ups", "UPS {psu}", "power supply {psu}",
         "PSU {psu}", "dc input", "PoE", "supply", "input power", "24V rail"],
        ["online", "restored", "on line power", "ok", "present", "good", "stable",
         "back to normal", "{volt} V ok", "no fault", "not on battery"],
        ["offline", "lost", "on battery", "failed", "absent", "fault", "failure",
         "out of range", "dropped to {volt_lo} V", "brownout"],
        "power"),
    "battery": StateKind(
        ["battery", "bat0", "BAT1", "backup battery", "rtc battery", "battery pack",
         "cell {n}"],
        ["full", "charged", "charged ({pct}%)", "fully charged", "charging", "ok",
         "at {pct}%", "discharging, {pct}% left", "good", "healthy", "not low",
         "no fault"],
        ["low", "critical", "critical ({pct_low}%)", "depleted", "empty", "not charging",
         "fault", "failed", "over-discharged", "swollen", "missing"],
        "power"),
    "charger": StateKind(
        ["charger", "charge controller", "solar charger", "mppt"],
        ["charging complete", "charging", "float", "idle", "ok", "bulk charging",
         "absorption", "no errors"],
        ["fault", "error", "over-current", "over-voltage", "disabled by fault",
         "input lost"],
        "power"),
    "position": StateKind(
        ["gps", "gnss", "gps fix", "GNSS receiver", "gps antenna"],
        ["fix acquired", "3D fix", "locked", "fix: 3D, {n} satellites", "ok", "tracking",
         "time synced", "no jamming"],
        ["fix lost", "no fix", "antenna open", "antenna short", "jamming detected",
         "not responding", "signal lost"],
        "sensor"),
    "enclosure": StateKind(
        ["door", "cabinet door", "enclosure", "lid", "door sensor", "tamper switch",
         "access panel"],
        ["closed", "locked", "secured", "closed and locked", "ok", "no tamper",
         "not opened"],
        ["forced open", "tamper detected", "breached", "opened without authorisation",
         "tampered", "intrusion detected"],
        "security"),
    "fan": StateKind(
        ["fan{n}", "fan {n}", "cpu fan", "cooling fan", "case fan", "fan tray"],
        ["running at {rpm} rpm", "ok", "spinning", "speed normal", "{rpm} rpm",
         "running", "no fault", "not stalled"],
        ["stalled (0 rpm)", "stalled", "failed", "0 rpm", "not spinning", "blocked",
         "speed below minimum", "tacho lost"],
        "hardware"),
    "actuator": StateKind(
        ["pump {n}", "motor {n}", "valve {n}", "relay {n}", "compressor", "conveyor",
         "actuator {n}", "drive {n}"],
        ["on", "running", "started", "in position", "energised", "ready", "ok",
         "cycle complete", "no fault", "no alarms active"],
        ["overload trip", "tripped", "jammed", "fault", "failed to open", "stuck",
         "dry run detected", "overcurrent", "not responding", "position error"],
        "hardware"),
    "medium": StateKind(
        ["sd card", "mmc0", "mmcblk0", "usb disk", "emmc", "data partition", "/data",
         "storage"],
        ["inserted", "mounted", "detected", "healthy", "ok", "mounted read-write",
         "{pct_low}% used", "no errors", "not full"],
        ["removed", "not detected", "read-only", "failing", "unmounted unexpectedly",
         "full", "write error", "{pct_hi}% used, almost full"],
        "storage"),
    "bus": StateKind(
        ["can0", "can1", "rs485 bus", "i2c bus {n}", "spi{n}", "modbus slave {n}",
         "fieldbus", "1-wire bus"],
        ["error-active", "ok", "online", "responding", "recovered", "bus-off recovered",
         "started", "no errors", "not bus-off"],
        ["bus-off", "error-passive", "not responding", "timeout", "offline", "no ack",
         "crc errors"],
        "hardware"),
    "process": StateKind(
        ["{proc}", "worker {n}", "inference engine", "scheduler", "collector", "app",
         "edge runtime", "container {proc}"],
        ["running", "alive", "started", "ready", "healthy", "restarted by operator",
         "up {n} days", "stopped on request", "stopped cleanly", "no crashes",
         "not restarted"],
        ["crashed", "hung", "not responding", "dead", "unhealthy", "restart loop",
         "killed (out of memory)", "exited unexpectedly"],
        "software"),
    "temperature": StateKind(
        ["cpu temp", "cpu temperature", "enclosure temperature", "thermal zone {n}",
         "board temp", "soc temperature", "cabinet temp"],
        ["normal", "ok", "within limits", "back to normal", "{temp} C", "nominal",
         "not throttled", "no alarm"],
        ["high", "critical", "over limit", "overheating", "{temp_hi} C, too hot",
         "above threshold"],
        "thermal"),
    "probe": StateKind(
        ["sensor {sensor}", "{sensor} probe", "{sensor}", "probe {n}", "thermocouple {n}",
         "level sensor", "flow sensor"],
        ["ok", "online", "reading", "calibrated", "reading {value} {unit}", "connected",
         "no errors", "not stuck"],
        ["offline", "not responding", "open circuit", "short circuit", "out of range",
         "failed", "disconnected", "no data"],
        "sensor"),
    "clock": StateKind(
        ["ntp", "clock", "time sync", "ptp", "system clock"],
        ["synchronized", "in sync", "synced to {host}", "locked", "ok", "no drift"],
        ["unsynchronized", "lost sync", "drift too large", "no server reachable",
         "not synchronized"],
        "network"),
}

# Clients, users and sessions of a service on the device: whatever their state, routine.
PEER = StateKind(
    ["client {ip}", "client {ip}:{port}", "peer {ip}", "user {user}", "session {n}",
     "connection from {ip}", "websocket client {n}", "Client {client}", "pop3-login",
     "imap-login", "remote host {ip}", "ssh session {n}", "subscriber {client}"],
    ["disconnected", "connected", "connection closed", "closed connection",
     "disconnected by user", "logged out", "session closed", "idle timeout, closed",
     "connection reset by peer", "went away", "gone", "disconnected (no auth attempts)",
     "closed by remote host"],
    [], "normal")
PEER_SHARE = 0.1  # of the state lines

# Device daemons whose lines the framed state lines pretend to be.
_STATE_DAEMONS = ["kernel", "edge-app", "netifd", "powerd", "gpsd", "sensord", "ifplugd",
                  "upsd", "fand", "modbusd", "collector", "watchdogd", "app"]

_FILLERS = {"client": ["sensor-12", "hmi-3", "dash", "mosq-7Yx2", "plc-4", "app"],
            "ifname": ["wan", "lan", "wwan", "mgmt", "iot"]}
# How a thing and its state are joined (``{s}`` subject, ``{t}`` state).
_JOINS = ["{s}: {t}", "{s} {t}", "{s} is {t}", "{s} -> {t}", "{s} state: {t}",
          "{s} status: {t}", "{s} changed state to {t}", "{s}: state {t}", "[{s}] {t}"]


def _fill(template: str, rng: random.Random) -> str:
    for name, values in _FILLERS.items():
        if "{" + name + "}" in template:  # a draw only for a filler the text uses
            template = template.replace("{" + name + "}", rng.choice(values))
    return fill(template, rng)


def state_line(kind: StateKind, healthy: bool, rng: random.Random) -> str:
    """One bare state line of ``kind``: a subject, joined to a healthy or an alarm state."""
    subject = _fill(rng.choice(kind.subjects), rng)
    state = _fill(rng.choice(kind.healthy if healthy else kind.alarm), rng)
    line = rng.choice(_JOINS).format(s=subject, t=state)
    return line[0].upper() + line[1:] if rng.random() < 0.3 else line


def state_lines(count: int, seed: int, healthy_share: float = 0.5) -> list[Example]:
    """``count`` bare state lines: :data:`PEER_SHARE` of them about peers (healthy), the
    rest of :data:`KINDS` drawn evenly, ``healthy_share`` of those healthy."""
    rng = random.Random(seed)
    kinds = list(KINDS.values())
    out: list[Example] = []
    for _ in range(count):
        if rng.random() < PEER_SHARE:
            out.append(Example(state_line(PEER, True, rng), "normal", "state"))
            continue
        kind = rng.choice(kinds)
        healthy = rng.random() < healthy_share
        out.append(Example(state_line(kind, healthy, rng),
                           "normal" if healthy else kind.label, "state"))
    return out


def framed_states(count: int, seed: int) -> list[Example]:
    """``count`` state lines (:func:`state_lines`), half of them bare, half framed by
    a device daemon in a training log style (their own generator: the other draws of a
    mix do not move when the state lines are added)."""
    rng = random.Random(seed + 1)
    out: list[Example] = []
    for e in state_lines(count, seed):
        text = frame(e.text, e.label, rng.choice(_STATE_DAEMONS), rng) \
            if rng.random() < 0.5 else e.text
        out.append(Example(text, e.label, e.style))
    return out
