"""The operator API around rollouts, against a real server process: token scopes enforced
(read cannot deploy, deploy cannot make tokens), tokens stored hashed and revocable, the
audit log, device labels and filters, and the OpenAPI schema describing the models."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fleet_server.config import OperatorToken, config_toml, hash_token
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from tests.support.fleet_cli import nf
from tests.support.rollout_rig import MODEL, api, client_args

AUDITOR_TOKEN = "auditor-token-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetSetup]:
    setup = setup_fleet(tmp_path_factory.mktemp("api-fleet"), mqtt_port=1)
    config = setup.config.model_copy(update={
        "mqtt": setup.config.mqtt.model_copy(update={"enabled": False}),
        "operator_tokens": [*setup.config.operator_tokens, OperatorToken(
            name="auditor", sha256=hash_token(AUDITOR_TOKEN), scopes=["read"])]})
    setup.config_path.write_text(config_toml(config), encoding="utf-8")
    setup.config = config
    server = FleetServer(setup).start()
    try:
        yield setup
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tokens(fleet: FleetSetup) -> dict[str, str]:
    """reader (read) and deployer (deploy), made by the admin through the CLI."""
    out: dict[str, str] = {}
    for name, scopes in (("reader", "read"), ("deployer", "deploy")):
        code, text, err = nf("server", "token", "--name", name, "--scopes", scopes,
                             *client_args(fleet))
        assert code == 0, err
        assert f"token {name!r} with scope(s) {scopes}" in text
        out[name] = text.split("NANOFLEET_TOKEN=")[1].split()[0]
    return out


def error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["code"], body["message"]


def test_token_scopes_are_enforced(fleet: FleetSetup, tokens: dict[str, str]) -> None:
    reader, deployer = tokens["reader"], tokens["deployer"]
    for path in ("/api/v1/devices", "/api/v1/rollouts", "/api/v1/audit", "/api/v1/models"):
        assert api(fleet, "GET", path, token=reader).status_code == 200, path
    rollout_body = {"model": MODEL, "version": 1, "select": {"all": True}}
    refused: list[tuple[str, str, Any]] = [
        ("POST", "/api/v1/rollouts", rollout_body),
        ("POST", "/api/v1/deployments", {"model": MODEL, "version": 1, "devices": ["a"]}),
        ("PATCH", "/api/v1/devices", {"devices": ["a"], "group": "g"}),
        ("POST", "/api/v1/rollouts/r-x/pause", {}),
        ("POST", "/api/v1/models/publish", None),
    ]
    for method, path, body in refused:
        status, code, message = error(api(fleet, method, path, token=reader, json=body))
        assert (status, code) == (403, "forbidden"), (path, message)
        assert f"token 'reader' has scope(s) [read]; {method} {path} needs 'deploy'" in message
        assert "nanofleet server token --name NAME --scopes deploy" in message
    for token in (reader, AUDITOR_TOKEN):  # API token and config token alike
        exit_code, _, err = nf("rollout", "create", MODEL, "1", "--select", "all",
                               *client_args(fleet, token))
        assert exit_code == 1 and "needs 'deploy'" in err

    assert api(fleet, "PATCH", "/api/v1/devices", token=deployer,
               json={"devices": ["scope-1"], "group": "g", "create": True}).status_code == 200
    for method, path in (("POST", "/api/v1/tokens"), ("GET", "/api/v1/tokens"),
                         ("DELETE", "/api/v1/tokens/reader")):
        status, code, message = error(api(fleet, method, path, token=deployer,
                                          json={"name": "x", "scopes": ["admin"]}))
        assert (status, code) == (403, "forbidden") and "needs 'admin'" in message
    exit_code, _, err = nf("server", "token", "--name", "sneaky", "--scopes", "admin",
                           *client_args(fleet, deployer))
    assert exit_code == 1 and "needs 'admin'" in err

    who = {name: api(fleet, "GET", "/api/v1/whoami", token=t).json() for name, t in
           (("reader", reader), ("deployer", deployer), ("operator", fleet.token),
            ("auditor", AUDITOR_TOKEN))}
    assert who["reader"]["scopes"] == ["read"]
    assert who["deployer"]["scopes"] == ["read", "deploy"]
    assert who["operator"] == {"name": "operator", "scopes": ["read", "deploy", "admin"],
                               "source": "config"}
    assert who["auditor"]["source"] == "config" and who["auditor"]["scopes"] == ["read"]


def test_tokens_are_stored_hashed_listed_and_revoked(fleet: FleetSetup,
                                                     tokens: dict[str, str]) -> None:
    db = sqlite3.connect(fleet.config.data_dir / "fleet.db")
    try:
        rows = dict(db.execute("SELECT name, sha256 FROM api_tokens").fetchall())
    finally:
        db.close()
    assert rows["reader"] == hashlib.sha256(tokens["reader"].encode()).hexdigest()
    for path in fleet.config.data_dir.glob("fleet.db*"):
        assert tokens["reader"].encode() not in path.read_bytes()

    code, out, _ = nf("server", "token", "--list", *client_args(fleet))
    assert code == 0 and re.search(r"reader\s+read\s+database\s+active\s+by operator", out)
    assert re.search(r"auditor\s+read\s+config", out) and tokens["reader"] not in out
    for name in ("reader", "operator"):
        status, code_, message = error(api(fleet, "POST", "/api/v1/tokens",
                                           json={"name": name, "scopes": ["read"]}))
        assert (status, code_) == (409, "token-exists") and "choose another" in message
    status, _, message = error(api(fleet, "POST", "/api/v1/tokens",
                                   json={"name": "x", "scopes": ["root"]}))
    assert status == 422 and "scopes.0" in message

    code, out, err = nf("server", "token", "--revoke", "reader", *client_args(fleet))
    assert code == 0 and "revoked 'reader'" in out, err
    status, code_, message = error(api(fleet, "GET", "/api/v1/devices", token=tokens["reader"]))
    assert (status, code_) == (401, "unauthorized") and "not recognised or revoked" in message
    status, _, message = error(api(fleet, "DELETE", "/api/v1/tokens/operator"))
    assert status == 404 and "remove it there and restart" in message

    code, out, _ = nf("server", "token", "--name", "ci", "--scopes", "deploy,read",
                      "--config-entry")
    assert code == 0 and 'scopes = ["read", "deploy"]' in out and "[[operator_tokens]]" in out
    code, _, err = nf("server", "token", "--name", "ci", "--scopes", "root", "--config-entry")
    assert code == 2 and "invalid scopes 'root'" in err


def test_device_labels_and_inventory_filters(fleet: FleetSetup,
                                             tokens: dict[str, str]) -> None:
    def listed(*args: str) -> list[str]:
        code, out, err = nf("devices", "list", "--json", *args, *client_args(fleet))
        assert code == 0, err
        return [d["device_id"] for d in json.loads(out)["devices"]]

    code, _, err = nf("devices", "tag", "lbl-1", "--group", "north",
                      *client_args(fleet, tokens["deployer"]))
    assert code == 1 and "never reported and are not enrolled: lbl-1" in err  # no phantom
    code, out, err = nf("devices", "tag", "lbl-1,lbl-2", "lbl-3", "--group", "north", "--create",
                        "--tags", "pumps,solar", *client_args(fleet, tokens["deployer"]))
    assert code == 0, err
    assert "lbl-3                    group north  tags pumps,solar" in out
    code, _, err = nf("devices", "tag", "lbl-3", "--no-group", "--remove-tags", "solar",
                      "--add-tags", "wind", *client_args(fleet))
    assert code == 0, err
    assert listed("--group", "north") == ["lbl-1", "lbl-2"]
    assert listed("--tag", "pumps", "--tag", "solar") == ["lbl-1", "lbl-2"]
    assert listed("--tag", "wind") == ["lbl-3"]
    assert set(listed("--state", "unknown", "--offline")) >= {"lbl-1", "lbl-2", "lbl-3"}
    assert listed("--state", "online") == []
    assert listed("--state", "trial") == []
    code, out, _ = nf("devices", "list", "--group", "north", *client_args(fleet))
    assert "north [pumps,solar]" in out and "lbl-3" not in out
    code, _, err = nf("devices", "list", "--model-version", "x:y", *client_args(fleet))
    assert code == 2 and "invalid --model-version" in err

    for body, message in (({"devices": ["a"], "group": "g", "clear_group": True},
                           "group or clear_group, not both"),
                          ({"devices": ["a"]}, "nothing to change"),
                          ({"devices": ["bad/id"], "group": "g"}, "devices.0"),
                          ({"devices": ["a"], "group": "no spaces"}, "group")):
        status, code_, text = error(api(fleet, "PATCH", "/api/v1/devices", json=body))
        assert (status, code_) == (422, "invalid-request") and message in text, text


def test_audit_log_names_who_did_what(fleet: FleetSetup, tokens: dict[str, str]) -> None:
    entries = api(fleet, "GET", "/api/v1/audit", params={"limit": 1000}).json()["entries"]
    seen = {(e["actor"], e["action"], e["subject"]) for e in entries}
    assert ("operator", "token-create", "reader") in seen
    assert ("operator", "token-create", "deployer") in seen
    assert ("operator", "token-revoke", "reader") in seen
    assert ("deployer", "devices-label", "lbl-1,lbl-2,lbl-3") in seen
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    code, out, _ = nf("audit", "--actor", "deployer", "--since", "1h", *client_args(fleet))
    assert code == 0 and "devices-label" in out and "token-create" not in out
    code, out, _ = nf("audit", "--action", "token-create", "--json", *client_args(fleet))
    assert {e["subject"] for e in json.loads(out)["entries"]} >= {"reader", "deployer"}


def test_an_audit_entry_names_at_most_a_hundred_devices(fleet: FleetSetup) -> None:
    """Review, December 2026: a label change's whole id list (up to 100,000 ids, 2 MB)
    went into its audit entry, and the audit page shows 50 entries at a time."""
    ids = [f"audit-{i:03d}" for i in range(150)]
    api(fleet, "PATCH", "/api/v1/devices", json={"devices": ids, "group": "audited",
                                                 "create": True})
    entries = api(fleet, "GET", "/api/v1/audit", params={"limit": 1000}).json()["entries"]
    [entry] = [e for e in entries if e["subject"].startswith("audit-000")]
    assert entry["detail"]["devices"] == ids[:100]
    assert entry["detail"]["devices_not_listed"] == 50 and entry["detail"]["group"] == "audited"


def test_openapi_describes_the_models(fleet: FleetSetup) -> None:
    schema = httpx.get(f"{fleet.url}/openapi.json", timeout=10).json()
    components = schema["components"]["schemas"]
    for name in ("RolloutView", "RolloutCreate", "Strategy", "Selector", "FailureThreshold",
                 "RolloutDeviceView", "StageView", "DeviceSummary", "DeviceLabels",
                 "AuditView", "TokenCreate", "TokenCreated", "ErrorBody"):
        props = components[name]["properties"]
        undocumented = [p for p, spec in props.items() if not spec.get("description")]
        assert not undocumented, (name, undocumented)
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    post = schema["paths"]["/api/v1/rollouts"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RolloutCreate")
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/RolloutView")
    assert post["responses"]["403"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/ErrorBody")
    for path in ("/api/v1/rollouts/{rollout_id}/abort", "/api/v1/audit", "/api/v1/tokens",
                 "/api/v1/devices", "/api/v1/whoami"):
        assert path in schema["paths"], path
