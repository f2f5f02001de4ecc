"""HTTP client for the operator API (what the ``nanofleet`` CLI uses)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "NANOFLEET_SERVER"
TOKEN_ENV = "NANOFLEET_TOKEN"
TOKEN_FILE_ENV = "NANOFLEET_TOKEN_FILE"
MAX_TOKEN_FILE_BYTES = 4096


def read_token_file(path: str) -> str:
    """The token in ``path`` (``-``: stdin), stripped: ``--token-file`` keeps the token out
    of the command line, where every user of the machine sees it (ps, /proc/PID/cmdline)."""
    try:
        if path == "-":
            import sys

            text = sys.stdin.read(MAX_TOKEN_FILE_BYTES)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_TOKEN_FILE_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"token file {path}: {exc}") from None
    if not text.strip():
        raise ValueError(f"token file {path} is empty")
    return text.strip()


class ApiCallError(RuntimeError):
    """The server refused or could not be reached; the message is for the operator."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}", None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("message")), str(err.get("code"))
    return f"HTTP {response.status_code}: {body}", None


class ApiClient:
    def __init__(self, server: str | None = None, token: str | None = None,
                 timeout: float = 300.0) -> None:
        self.server = (server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
        self.token = token or os.environ.get(TOKEN_ENV) or (
            read_token_file(os.environ[TOKEN_FILE_ENV]) if os.environ.get(TOKEN_FILE_ENV)
            else None)
        self.timeout = timeout

    @property
    def metadata_url(self) -> str:
        return f"{self.server}/repo/metadata/"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's response below HTTP 400; :class:`ApiCallError` from 400 on."""
        url = f"{self.server}{path}"
        try:
            response = httpx.request(method, url, headers=self._headers(), timeout=self.timeout,
                                     **kwargs)
        except httpx.HTTPError as exc:
            raise ApiCallError(f"cannot reach the fleet server at {self.server}: {exc} (check "
                               f"--server or {SERVER_ENV})") from None
        if response.status_code >= 400:
            message, code = _message(response)
            raise ApiCallError(message, response.status_code, code)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.send(method, path, **kwargs).json()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=dict(params or {}))

    def get_bytes(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """The body as sent, for routes that answer other than JSON (JSONL exports)."""
        return self.send("GET", path, params=dict(params or {})).content

    def post_json(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def publish(self, metadata: bytes, files: Mapping[str, bytes]) -> Any:
        parts: list[tuple[str, tuple[str, bytes, str]]] = [
            ("metadata", ("targets.json", metadata, "application/json"))]
        parts += [("files", (path, data, "application/octet-stream"))
                  for path, data in files.items()]
        return self.request("POST", "/api/v1/models/publish", files=parts)
