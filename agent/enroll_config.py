"""The agent configuration an enrollment implies: a snippet to print, or a merge into a file.

What enrollment sets: ``[mqtt]`` host and port (the broker the certificate is for),
``[mqtt.tls]`` (CA, certificate, key) and ``[ota]`` ``root_file`` (plus the repository
URLs when there is no ``[ota]`` yet). A root file the config already names and that
exists is kept: it is the device's provisioned trust anchor, and the OTA client
follows root rotations from it.

Merging rewrites the file from its parsed form (comments are lost; the original is
kept as ``<file>.bak``) and only after the result passed the agent's own config
validation.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from agent.config import ConfigError, parse_config
from agent.enroll import EnrollError, IdentityFiles
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


def render_snippet(response: EnrollResponse, files: IdentityFiles, server: str) -> str:
    metadata_url, target_base_url = repo_urls(response, server)
    data: dict[str, Any] = {
        "device_id": response.device_id,
        "mqtt": {"host": response.broker_host, "port": response.broker_port,
                 "tls": {"ca_file": str(files.ca), "cert_file": str(files.cert),
                         "key_file": str(files.key)}},
    }
    if response.tuf_root is not None:
        data["ota"] = {"metadata_url": metadata_url, "target_base_url": target_base_url,
                       "root_file": str(files.root)}
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
           server: str) -> tuple[dict[str, Any], list[str]]:
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
    if response.tuf_root is not None:
        metadata_url, target_base_url = repo_urls(response, server)
        ota = new.get("ota")
        if ota is None:
            new["ota"] = {"metadata_url": metadata_url, "target_base_url": target_base_url,
                          "root_file": str(files.root)}
            notes.append(f"ota: updates from {metadata_url}, trust anchor {files.root}")
        elif ota.get("root_file") and Path(ota["root_file"]).exists():
            notes.append(f"ota: keeping the provisioned root {ota['root_file']} (the server's "
                         f"current root is in {files.root})")
        else:
            ota["root_file"] = str(files.root)
            notes.append(f"ota: trust anchor {files.root}")
    return new, notes


def merge_into_file(path: Path, response: EnrollResponse, files: IdentityFiles,
                    server: str) -> list[str]:
    data, notes = merged(read_raw(path), response, files, server)
    try:
        parse_config(data, path)
    except ConfigError as exc:
        raise EnrollError(f"the config with the enrollment added would be invalid, left "
                          f"unchanged: {exc}", 2) from None
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("# nanofleet agent configuration (rewritten by nanofleet-agent enroll; the "
                   f"previous file is {backup.name})\n" + to_toml(data), encoding="utf-8")
    st = path.stat()
    if os.geteuid() == 0:  # root rewriting /etc/nanofleet/agent.toml: keep root:nanofleet
        os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, st.st_mode & 0o777)
    os.replace(tmp, path)
    notes.append(f"previous config kept as {backup}")
    return notes
