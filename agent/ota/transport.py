"""How artifact and metadata bytes reach the device, behind one small interface.

:class:`ArtifactTransport` is all the OTA client needs from a network: bytes of a
URL from an offset, bounded. HTTP(S) is implemented here (stdlib only, so a
device needs no HTTP library); an MQTT transport can implement the same class.
No transport is trusted: every byte is checked against signed metadata later.
"""

from __future__ import annotations

import http.client
import re
import ssl
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterator
from urllib.parse import urlsplit

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class TransportError(Exception):
    """The transfer failed. ``status`` is the HTTP-like status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ArtifactNotFound(TransportError):
    """The remote has no such file (HTTP 403/404)."""


class ArtifactTooLarge(TransportError):
    """The remote offered or sent more bytes than the caller's bound."""


class TransferTimeout(TransportError):
    """No byte arrived within the transport's timeout."""


def check_rate(url: str, received: int, elapsed: float, timeout: float,
               min_rate: float) -> None:
    """The bound every transport puts on a slow sender: once a transfer is ``timeout`` old
    it must average ``min_rate`` bytes/s (0: no bound), so dripping a byte now and then
    cannot hold an update for longer than about ``timeout + length / min_rate``."""
    if min_rate and elapsed > timeout and received < min_rate * elapsed:
        raise TransferTimeout(f"{url}: {received} bytes in {elapsed:.0f} s, below the minimum "
                              f"rate of {min_rate:.0f} B/s")


class ArtifactTransport(ABC):
    @abstractmethod
    def fetch(self, url: str, start: int = 0, max_length: int | None = None) -> Iterator[bytes]:
        """Yield the bytes of ``url`` from offset ``start`` on.

        Raises :class:`ArtifactTooLarge` as soon as more than ``max_length`` bytes
        (counted from ``start``) are announced or received, :class:`ArtifactNotFound`
        for a missing file, :class:`TransportError` for anything else. Ending early
        without an error is allowed: callers compare what they got with what they need.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what the transport holds open (e.g. a broker connection)."""


class HttpTransport(ArtifactTransport):
    """HTTP(S) with ``Range:`` requests for resume; works with any static file server.

    A server that ignores ``Range`` (200 instead of 206) still works: the bytes
    before ``start`` are read and dropped.

    Time is bounded too, not only bytes: ``timeout`` bounds the silence between two
    reads, and once a transfer is ``timeout`` seconds old its average rate must stay
    at or above ``min_rate`` bytes/s, so a server dripping a byte now and then (a
    slow-loris mirror) cannot hold an update for longer than about
    ``timeout + length / min_rate``."""

    def __init__(self, timeout: float = 30.0, chunk_size: int = 64 * 1024,
                 user_agent: str = "nanofleet-agent",
                 ssl_context: ssl.SSLContext | None = None, min_rate: float = 1024.0) -> None:
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.user_agent = user_agent
        self.ssl_context = ssl_context  # e.g. pinned to the fleet's CA; None: system CAs
        self.min_rate = min_rate

    def fetch(self, url: str, start: int = 0, max_length: int | None = None) -> Iterator[bytes]:
        if urlsplit(url).scheme not in ("http", "https"):
            raise TransportError(f"{url}: only http and https URLs are supported")
        if start < 0 or (max_length is not None and max_length < 0):
            raise ValueError("start and max_length must be >= 0")
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout,
                                              context=self.ssl_context)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (403, 404):
                raise ArtifactNotFound(f"{url}: HTTP {exc.code}", exc.code) from None
            raise TransportError(f"{url}: HTTP {exc.code} {exc.reason}", exc.code) from None
        except TimeoutError as exc:
            raise TransferTimeout(f"{url}: no answer within {self.timeout} s") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise TransportError(f"{url}: {getattr(exc, 'reason', exc)}") from None
        return self._body(url, response, start, max_length)

    def _body(self, url: str, response: http.client.HTTPResponse, start: int,
              max_length: int | None) -> Iterator[bytes]:
        with response:
            skip = 0
            if start and response.status == 206:
                m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != start:
                    raise TransportError(f"{url}: server answered range {start}- with "
                                         f"{response.headers.get('Content-Range')!r}")
            elif start:
                skip = start  # Range ignored: the full body follows
            announced = response.headers.get("Content-Length")
            if (max_length is not None and announced and announced.isdigit()
                    and int(announced) - skip > max_length):
                raise ArtifactTooLarge(f"{url}: server announces {int(announced) - skip} bytes, "
                                       f"more than the {max_length} allowed")
            received = 0
            started = time.monotonic()
            while True:
                want = self.chunk_size
                if max_length is not None:
                    # Read one byte past the bound at most: enough to detect endless data.
                    want = min(want, skip + max_length - received + 1)
                try:
                    # read1: one recv at most, so the rate check below runs as bytes come
                    chunk = response.read1(want)
                except http.client.IncompleteRead as exc:
                    chunk = exc.partial
                    if chunk:
                        yield from self._emit(url, chunk, skip, max_length, received)
                    raise TransportError(f"{url}: connection closed mid-transfer") from None
                except TimeoutError as exc:
                    raise TransferTimeout(f"{url}: stalled for {self.timeout} s") from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise TransportError(f"{url}: transfer failed: {exc}") from None
                if not chunk:
                    return
                yield from self._emit(url, chunk, skip, max_length, received)
                received += len(chunk)
                check_rate(url, received, time.monotonic() - started, self.timeout,
                           self.min_rate)

    @staticmethod
    def _emit(url: str, chunk: bytes, skip: int, max_length: int | None,
              received: int) -> Iterator[bytes]:
        """Drop the part of ``chunk`` before ``skip``, enforce ``max_length``, yield the rest."""
        lo = max(0, skip - received)
        data = chunk[lo:]
        if not data:
            return
        delivered = max(0, received - skip)
        if max_length is not None and delivered + len(data) > max_length:
            raise ArtifactTooLarge(f"{url}: server sent more than the {max_length} bytes allowed")
        yield data
