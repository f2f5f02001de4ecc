"""The REST API against its own schema: Schemathesis drives the real `nanofleet server run`
(uvicorn on a free 127.0.0.1 port) from its /openapi.json, every phase (examples,
coverage, fuzzing, stateful), every check, with a token of each scope, at 0 failures.
What the schema cannot state (signatures, the order of wave percentages) is in
tests/schemathesis.toml with the reason. Then one case per finding the fuzzer made,
as a plain request, so that each stays fixed on its own.

A bigger run: ``NANOFLEET_SCHEMA_EXAMPLES=50 pytest tests/test_api_schema_fuzz.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from hil.fleet import FleetServer, setup_fleet
from tests.support.mosquitto import Mosquitto

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("NANOFLEET_SCHEMA_EXAMPLES", "4"))
SEED = os.environ.get("NANOFLEET_SCHEMA_SEED", "20261203")
BEYOND_SQLITE = 2**63  # one past SQLite's INTEGER range


class Fleet:
    def __init__(self, server: FleetServer, tokens: dict[str, str]) -> None:
        self.server, self.tokens = server, tokens

    def call(self, method: str, path: str, scope: str = "admin", **kw: object) -> httpx.Response:
        return httpx.request(method, self.server.url + path, timeout=30, headers={
            "Authorization": f"Bearer {self.tokens[scope]}"}, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with ExitStack() as stack:  # what started is stopped, even if a later step fails
        broker = Mosquitto(tmp_path_factory.mktemp("schema-broker")).start()
        stack.callback(broker.stop)
        setup = setup_fleet(tmp_path_factory.mktemp("schema"), mqtt_port=broker.port)
        server = stack.enter_context(FleetServer(setup))
        tokens = {"admin": setup.token}
        for scope in ("read", "deploy"):
            r = httpx.post(f"{setup.url}/api/v1/tokens", timeout=10,
                           json={"name": f"fuzz-{scope}", "scopes": [scope]},
                           headers={"Authorization": f"Bearer {setup.token}"})
            assert r.status_code == 201, r.text
            tokens[scope] = r.json()["token"]
        yield Fleet(server, tokens)


@pytest.mark.parametrize("scope", ["read", "deploy", "admin"])
def test_schemathesis_finds_nothing(fleet: Fleet, scope: str, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    proc = subprocess.run(
        [str(cli), "--config-file", str(CONFIG), "run", f"{fleet.server.url}/openapi.json",
         "-H", f"Authorization: Bearer {fleet.tokens[scope]}", "--checks", "all",
         "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(EXAMPLES),
         "--seed", SEED, "-w", "1", "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its caches go there
    summary = proc.stdout[proc.stdout.find("SUMMARY"):]
    assert proc.returncode == 0, proc.stdout[-12000:] + proc.stderr[-2000:]
    assert "failures" not in summary.split("Test cases:")[-1], summary


# --- each finding, fixed on its own -----------------------------------------------------------
def deployment_version_beyond_the_database(f: Fleet) -> None:
    r = f.call("POST", "/api/v1/deployments", json={"model": "m", "version": BEYOND_SQLITE,
                                                     "devices": ["pump-07"]})
    assert r.status_code == 422 and "version" in r.json()["error"]["message"], r.text
    r = f.call("GET", f"/api/v1/devices?model_version={BEYOND_SQLITE}")
    assert r.status_code == 422, r.text


def labelling_an_unknown_device_does_not_create_it(f: Fleet) -> None:
    r = f.call("PATCH", "/api/v1/devices", json={"devices": ["pmup-07"], "group": "north"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown-device", r.text
    assert f.call("GET", "/api/v1/devices/pmup-07").status_code == 404  # no phantom
    r = f.call("PATCH", "/api/v1/devices", json={"devices": ["pre-1"], "group": "north",
                                                  "create": True})
    assert r.status_code == 200 and r.json()["devices"][0]["group"] == "north"


def schema_violating_body_is_refused(f: Fleet) -> None:
    r = f.call("PATCH", "/api/v1/devices", json={"devices": ["pre-1"], "group": "g",
                                                  "clear_group": 0})
    assert r.status_code == 422, r.text
    r = f.call("POST", "/api/v1/enroll-tokens", json={"device_id": "pre-1", "replace": 0})
    assert r.status_code == 422, r.text  # found by the bigger run (benchmarks/)


def method_not_allowed_says_what_is(f: Fleet) -> None:
    for method, path, allow in (("OPTIONS", "/api/v1/devices", "GET, PATCH"),
                                ("TRACE", "/api/v1/audit", "GET"),
                                ("DELETE", "/api/v1/rollouts", "GET, POST")):
        r = f.call(method, path)
        assert r.status_code == 405 and r.headers.get("allow") == allow, (path, r.headers)


def schema_states_what_the_server_checks(f: Fleet) -> None:
    schema = httpx.get(f.server.url + "/openapi.json", timeout=10).json()["components"]
    lifetime = schema["schemas"]["EnrollTokenCreate"]["properties"]["expires_in_s"]
    limit = f.server.setup.config.enrollment.token_max_hours * 3600
    assert any(o.get("maximum") == limit for o in lifetime.get("anyOf", [lifetime]))
    labels = schema["schemas"]["DeviceLabels"]
    assert "anyOf" in labels and "not" in labels  # "nothing to change" is stated
    assert "anyOf" in schema["schemas"]["Selector"]  # "select devices: ..." is stated
    r = f.call("POST", "/api/v1/enroll-tokens", json={"expires_in_s": limit + 1})
    assert r.status_code == 422, r.text  # refused as the schema says


FINDINGS: dict[str, Callable[[Fleet], None]] = {
    f.__name__: f for f in (deployment_version_beyond_the_database,
                            labelling_an_unknown_device_does_not_create_it,
                            schema_violating_body_is_refused, method_not_allowed_says_what_is,
                            schema_states_what_the_server_checks)}


@pytest.mark.parametrize("finding", list(FINDINGS))
def test_schema_finding_stays_fixed(fleet: Fleet, finding: str) -> None:
    FINDINGS[finding](fleet)
