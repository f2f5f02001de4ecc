"""sd_notify(3) for the agent: READY/RELOADING/STOPPING/WATCHDOG/STATUS to systemd.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). We prefer
libsystemd's ``sd_notify`` through systemd-python when it is importable (it also
knows newer socket kinds), and otherwise send the same datagram ourselves, so a
device without systemd-python behaves the same. Without ``$NOTIFY_SOCKET`` (a
plain foreground process, a test) every call is a no-op returning False.

Failures to notify never raise: a daemon must not die because systemd went away,
and a missed WATCHDOG=1 is exactly what the watchdog is there to notice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("nanofleet.agent.notify")

_STATUS_MAX_CHARS = 1024  # systemd shows one line; keep datagrams small


# ---------------------------------------------------------------------------
# Pure helpers (no I/O): message formatting and environment parsing.
# ---------------------------------------------------------------------------


def notify_address(value: str | None) -> str | None:
    """The socket address for a ``$NOTIFY_SOCKET`` value, or None when unusable.

    ``/path`` is a filesystem socket; ``@name`` is abstract (leading NUL on the
    wire). Other forms (e.g. ``vsock:``) are left to libsystemd.
    """
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def format_message(fields: Mapping[str, str | int]) -> str:
    """``KEY=value`` lines for one datagram. Values are one line each: a newline in a
    STATUS text would otherwise start a bogus assignment."""
    lines = []
    for key, value in fields.items():
        if not key or not key.replace("_", "").isalnum() or not key.isupper():
            raise ValueError(f"invalid sd_notify field name {key!r}")
        text = str(value).replace("\r", " ").replace("\n", " ")
        lines.append(f"{key}={text}")
    return "\n".join(lines)


def watchdog_interval_from_env(environ: Mapping[str, str], pid: int) -> float | None:
    """Watchdog timeout in seconds from ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, which,
    when set, must be this process), or None when no watchdog applies to us.

    Ping at half this interval or more often (sd_watchdog_enabled(3))."""
    usec_text = environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 1_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd wants in ``MONOTONIC_USEC=``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# ---------------------------------------------------------------------------
# Senders (I/O).
# ---------------------------------------------------------------------------

Sender = Callable[[str], bool]


def _libsystemd_sender() -> Sender | None:
    try:
        from systemd import daemon
    except ImportError:
        return None

    def send(message: str) -> bool:
        return bool(daemon.notify(message))

    return send


SEND_TIMEOUT_S = 0.25
# The messages that change the unit's state in systemd, kept and resent when dropped.
LIFE_CYCLE_FIELDS = ("READY", "RELOADING", "STOPPING")
MAX_PENDING = 4


def _socket_sender(address: str) -> Sender:
    def send(message: str) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A datagram socket blocks when the receiver's queue is full (often only
                # 10 datagrams: net.unix.max_dgram_qlen). A service manager that stopped
                # reading must not freeze the daemon's main loop, so sends are bounded.
                sock.settimeout(SEND_TIMEOUT_S)
                sock.sendto(message.encode("utf-8"), address)
        except OSError as exc:
            log.debug("sd_notify to %r failed: %s", address, exc)
            return False
        return True

    return send


class Notifier:
    """Tells systemd about the daemon's life cycle.

    ``backend`` is ``"auto"`` (the socket module, with a bounded send; see below),
    ``"libsystemd"`` or ``"socket"``. ``environ`` defaults to ``os.environ``; the
    libsystemd backend always reads the real process environment, so passing another
    mapping forces the socket backend.
    """

    def __init__(
        self, environ: Mapping[str, str] | None = None, backend: str = "auto"
    ) -> None:
        if backend not in ("auto", "libsystemd", "socket"):
            raise ValueError(f"unknown sd_notify backend {backend!r}: auto, libsystemd or socket")
        env = os.environ if environ is None else environ
        self._environ = env
        raw = env.get("NOTIFY_SOCKET")
        address = notify_address(raw)
        self._send: Sender | None = None
        self._pending: list[str] = []  # life-cycle messages a full queue dropped
        self.backend = "none"
        if not raw:
            return
        # "auto" uses our socket sender: libsystemd's sd_notify blocks without a bound
        # when the receiver's queue is full; ours gives up after SEND_TIMEOUT_S.
        want_lib = backend == "libsystemd" and environ is None
        lib = _libsystemd_sender() if want_lib else None
        if lib is not None:
            self._send, self.backend = lib, "libsystemd"
        elif backend == "libsystemd":
            raise RuntimeError("sd_notify backend 'libsystemd' needs systemd-python "
                               "and the process environment")
        elif address is not None:
            self._send, self.backend = _socket_sender(address), "socket"
        else:
            log.warning("NOTIFY_SOCKET=%r is not a path or @abstract name and "
                        "systemd-python is missing: not notifying systemd", raw)

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens to us."""
        return self._send is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one datagram with the given fields; False when disabled or failed.

        A life-cycle message (READY, RELOADING, STOPPING) that could not be sent is kept and
        sent again, in order, before the next notification: a dropped WATCHDOG or STATUS is
        replaced by the next one anyway, but under ``Type=notify-reload`` a lost
        ``RELOADING=1`` or ``READY=1`` leaves systemd waiting for the reload to finish. At
        most :data:`MAX_PENDING` are kept (a receiver that never reads again must not grow
        the daemon's memory)."""
        if self._send is None:
            return False
        message = format_message(fields)
        life_cycle = any(key in fields for key in LIFE_CYCLE_FIELDS)
        while self._pending:  # what was dropped first goes first
            if not self._send(self._pending[0]):
                if life_cycle:
                    self._keep(message)
                return False
            self._pending.pop(0)
        if self._send(message):
            return True
        if life_cycle:
            self._keep(message)
        return False

    def _keep(self, message: str) -> None:
        self._pending.append(message)
        del self._pending[:-MAX_PENDING]  # the newest state is what systemd must learn

    def ready(self, status: str | None = None) -> bool:
        """READY=1: startup (or a reload) finished; optional STATUS= text."""
        return self.notify(READY=1, **_status_field(status))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC= (required by Type=notify-reload); send
        ready() when the reload is done."""
        return self.notify(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), **_status_field(status))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.notify(STOPPING=1, **_status_field(status))

    def watchdog(self) -> bool:
        """WATCHDOG=1: call only when a real health check passed."""
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """STATUS=: one human line shown by ``systemctl status``."""
        return self.notify(**_status_field(text))

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC=: ask for more time in a slow start/stop step."""
        return self.notify(EXTEND_TIMEOUT_USEC=max(1, int(seconds * 1_000_000)))

    def watchdog_interval(self) -> float | None:
        """Watchdog timeout in seconds when systemd expects WATCHDOG=1 from us, else
        None. Ping at least twice per interval."""
        if not self.enabled:
            return None
        return watchdog_interval_from_env(self._environ, os.getpid())


def _status_field(status: str | None) -> dict[str, str]:
    if status is None:
        return {}
    return {"STATUS": status[:_STATUS_MAX_CHARS]}
