"""The agent configuration an enrollment implies: a snippet to print, or a merge into a file.

What enrollment sets: ``[mqtt]`` host and port (the broker the certificate is for),
``[mqtt.tls]`` (CA, certificate, key) and ``[ota]`` ``root_file`` (plus the repository
URLs when there is no ``[ota]`` yet): the provisioned root, or the pinned one enrollment
stored. The OTA client follows root rotations from it.

Merging rewrites the file from its parsed form (comments are lost; the original is
kept as ``<file>.bak``) and only after the result passed the agent's own config
validation. Run as root, it writes through :class:`agent.safe_dir.SafeDir` (no link
followed; owner, group and mode of the original kept through the new file's descriptor).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from agent.config import ConfigError, parse_config
from agent.enroll import EnrollError, IdentityFiles
from agent.safe_dir import SafeDir, UnsafePath
from contract.enrollment import EnrollResponse

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --- a small TOML writer (tomllib only reads) ----------------------------------------------

def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list) and not any(isinstance(v, dict) for v in value):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):  # only reached inside an array: an inline table
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise EnrollError(f"cannot write a {type(value).__name__} back into the config", 2)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(table: dict[str, Any], path: tuple[str, ...] = ()) -> str:
    """TOML text for parsed TOML data: scalars first, then sub-tables and arrays of tables."""
    out = [f"{_key(k)} = {_value(v)}" for k, v in table.items()
           if not isinstance(v, dict) and not _is_table_array(v)]
    text = "\n".join(out) + ("\n" if out else "")
    for k, v in table.items():
        name = (*path, _key(k))
        if isinstance(v, dict):
            text += f"\n[{'.'.join(name)}]\n" + to_toml(v, name)
        elif _is_table_array(v):
            for item in v:
                text += f"\n[[{'.'.join(name)}]]\n" + to_toml(item, name)
    return text


# --- what enrollment sets --------------------------------------------------------------------

def repo_urls(response: EnrollResponse, server: str) -> tuple[str, str]:
    base = server.rstrip("/")
    return (response.metadata_url or f"{base}/repo/metadata/",
            response.target_base_url or f"{base}/repo/targets/")


def render_snippet(response: EnrollResponse, files: IdentityFiles, server: str,
                   root_file: Path | None) -> str:
    metadata_url, target_base_url = repo_urls(response, server)
    data: dict[str, Any] = {
        "device_id": response.device_id,
        "mqtt": {"host": response.broker_host, "port": response.broker_port,
                 "tls": {"ca_file": str(files.ca), "cert_file": str(files.cert),
                         "key_file": str(files.key)}},
    }
    if root_file is not None:
        data["ota"] = {"metadata_url": metadata_url, "target_base_url": target_base_url,
                       "root_file": str(root_file)}
    return "# add to the agent config (nanofleet-agent enroll)\n" + to_toml(data)


def read_raw(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EnrollError(f"{path} does not exist: write the agent config first (state_dir, "
                          "sources), or enroll without --config and add the printed snippet",
                          2) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EnrollError(f"{path}: cannot read the agent config: {exc}", 2) from None


def merged(data: dict[str, Any], response: EnrollResponse, files: IdentityFiles,
           server: str, root_file: Path | None) -> tuple[dict[str, Any], list[str]]:
    """(new config data, what changed) — pure."""
    new = json.loads(json.dumps(data))  # deep copy of plain TOML data
    notes: list[str] = []
    if new.get("device_id") not in (None, response.device_id):
        raise EnrollError(f"the config says device_id = {new['device_id']!r} but the "
                          f"certificate is for {response.device_id!r}", 2)
    new["device_id"] = response.device_id
    mqtt = new.setdefault("mqtt", {})
    mqtt.update(host=response.broker_host, port=response.broker_port)
    mqtt["tls"] = {"ca_file": str(files.ca), "cert_file": str(files.cert),
                   "key_file": str(files.key)}
    notes.append(f"mqtt: {response.broker_host}:{response.broker_port} over TLS with "
                 f"{files.cert}")
    if root_file is not None:
        metadata_url, target_base_url = repo_urls(response, server)
        ota = new.get("ota")
        if ota is None:
            new["ota"] = {"metadata_url": metadata_url, "target_base_url": target_base_url,
                          "root_file": str(root_file)}
            notes.append(f"ota: updates from {metadata_url}, trust anchor {root_file}")
        elif ota.get("root_file") == str(root_file):
            notes.append(f"ota: keeping the provisioned root {root_file}")
        else:
            ota["root_file"] = str(root_file)
            notes.append(f"ota: trust anchor {root_file}")
    return new, notes


def merge_into_file(path: Path, response: EnrollResponse, files: IdentityFiles,
                    server: str, root_file: Path | None) -> list[str]:
    try:
        with SafeDir.open(path.parent) as parent:
            return _merge(parent, path, response, files, server, root_file)
    except (UnsafePath, OSError) as exc:
        raise EnrollError(f"{path}: cannot rewrite the agent config safely: {exc}", 2) from None


def _merge(parent: SafeDir, path: Path, response: EnrollResponse, files: IdentityFiles,
           server: str, root_file: Path | None) -> list[str]:
    original = parent.read(path.name)
    st = parent.mode_of(path.name)
    if original is None or st is None or not stat.S_ISREG(st.st_mode):
        raise EnrollError(f"{path}: not a regular file", 2)
    try:
        data, notes = merged(tomllib.loads(original.decode("utf-8")), response, files, server,
                             root_file)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EnrollError(f"{path}: cannot read the agent config: {exc}", 2) from None
    try:
        parse_config(data, path)
    except ConfigError as exc:
        raise EnrollError(f"the config with the enrollment added would be invalid, left "
                          f"unchanged: {exc}", 2) from None
    # Owner, group and mode kept (root:nanofleet 0640 for /etc/nanofleet/agent.toml).
    owner = (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
    mode = stat.S_IMODE(st.st_mode)
    backup = path.name + ".bak"
    parent.write(backup, original, mode, owner)
    parent.write(path.name, ("# nanofleet agent configuration (rewritten by nanofleet-agent "
                             f"enroll; the previous file is {backup})\n" + to_toml(data))
                 .encode("utf-8"), mode, owner)
    notes.append(f"previous config kept as {path.with_name(backup)}")
    return notes
