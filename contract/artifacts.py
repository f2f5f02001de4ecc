"""Artifacts over MQTT: the request a device sends and the header of every chunk.

A device that reaches only the broker fetches TUF metadata and targets as chunked
streams. It publishes an :class:`ArtifactRequest` (JSON) on
``dev/{id}/artifacts/req`` for a *range of chunks* of one repository file; the
fleet server answers on ``dev/{id}/artifacts/chunk/{transfer}`` with one message
per chunk whose payload is the raw bytes and whose MQTT v5 user property
``nf-artifact`` holds the JSON :class:`ArtifactChunk` header (no base64 of big
data). A chunk is identified by its byte offset, so duplicates (QoS 1 redelivery,
re-requests after a reconnect) are recognised and dropped by the device.

Nothing here is trusted: the bytes are verified against signed TUF lengths and
hashes by the device exactly as when they come over HTTP.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Literal

from pydantic import Field, model_validator

from contract.strict import Strict

HEADER_PROPERTY = "nf-artifact"
TRANSFER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MIN_CHUNK_BYTES = 1024
MAX_CHUNK_BYTES = 256 * 1024
MAX_REQUEST_CHUNKS = 64
MAX_REQUEST_BYTES = 1024 * 1024  # one request: at most this many bytes asked for
MAX_PATH_CHARS = 1024
REPOSITORY_DIRS = ("metadata", "targets")

ChunkError = Literal["not-found", "forbidden", "bad-request", "range", "too-large", "busy",
                     "rate-limited", "internal"]


class ArtifactRequest(Strict):
    """One range of chunks of one repository file, asked for by a device."""

    transfer: str = Field(pattern=TRANSFER_ID_PATTERN,
                          description="Transfer id chosen by the device; the chunk topic's last "
                          "level. All range requests of one download share it.")
    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS,
                      description="Repository-relative file: metadata/<file> or "
                      "targets/<dir>/<file> (not URL-encoded).")
    offset: int = Field(ge=0, description="Byte offset of the first chunk wanted.")
    chunks: int = Field(ge=1, le=MAX_REQUEST_CHUNKS,
                        description="How many chunks to send from `offset` (the flow-control "
                        "window); fewer come at the end of the file.")
    chunk_size: int = Field(ge=MIN_CHUNK_BYTES, le=MAX_CHUNK_BYTES,
                            description="Bytes per chunk (the last chunk of a file is shorter).")
    max_length: int | None = Field(
        default=None, ge=0,
        description="The device accepts at most this many bytes from `offset` on; a longer "
        "file is answered with error too-large. None: no bound.")

    @model_validator(mode="after")
    def _bounded(self) -> ArtifactRequest:
        if self.chunks * self.chunk_size > MAX_REQUEST_BYTES:
            raise ValueError(f"chunks x chunk_size = {self.chunks * self.chunk_size} bytes; at "
                             f"most {MAX_REQUEST_BYTES} per request")
        return self


class ArtifactChunk(Strict):
    """Header of one chunk message (the payload is the chunk's raw bytes)."""

    transfer: str = Field(pattern=TRANSFER_ID_PATTERN, description="The request's transfer id.")
    offset: int = Field(ge=0, description="File offset of the payload's first byte (for an "
                        "error: the offset of the request it answers).")
    size: int | None = Field(default=None, ge=0,
                             description="Length of the whole file; None with an error.")
    version: str | None = Field(
        default=None, max_length=64,
        description="Identity of the file's content (size, mtime, inode); if it changes "
        "within one transfer the file was replaced and the bytes must not be mixed.")
    final: bool = Field(default=False,
                        description="This chunk ends the file (offset + payload = size).")
    error: ChunkError | None = Field(default=None,
                                     description="Why the request was not served; no payload.")
    detail: str | None = Field(default=None, max_length=1000,
                               description="Human explanation of `error`.")
    retry_after_s: float | None = Field(
        default=None, ge=0, le=3600,
        description="With busy/rate-limited: ask again for this range after this long.")


def check_artifact_path(path: str) -> list[str]:
    """``path`` split into its parts if it names a file a device may fetch, else ValueError.

    Only plain relative paths below ``metadata/`` or ``targets/``: no empty, ``.`` or
    ``..`` parts, no hidden files (partial uploads, the lock file), no backslash or NUL."""
    parts = path.split("/")
    if (len(parts) < 2 or parts[0] not in REPOSITORY_DIRS or "\\" in path or "\x00" in path
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
        raise ValueError(f"{path!r} is not a repository file (metadata/... or targets/..., "
                         "plain relative path)")
    return parts


def set_tcp_nodelay(client: Any, userdata: Any, sock: Any) -> None:
    """paho ``on_socket_open`` callback for both ends of an artifact stream. Chunks and
    requests are small request/response messages: without TCP_NODELAY, Nagle's
    algorithm and delayed ACKs add ~40 ms to every round trip."""
    with contextlib.suppress(OSError, AttributeError):  # not TCP (websocket): only slower
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
