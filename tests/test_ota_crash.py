"""kill -9 at every OTA state: the real agent dies right after persisting the state
(started through ``hil/ota_crash.py``: an ``os._exit(137)`` — no cleanup runs, and no
hook in the agent itself), restarts, and
must come back with exactly one consistent live model and the update finished
(before trial) or undone (trial)."""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.models import finetuned, traffic, v1_bundle
from hil.ota_crash import CRASH_EXIT
from tests.support.mosquitto import Mosquitto
from tests.support.ota_rig import Repo, Reports, make_agent

DEV = "ota-crash"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    base = tmp_path_factory.mktemp("crash-repo")
    r = Repo(base / "tuf")
    r.publish(v1_bundle())
    r.publish(finetuned(2), delta_from=(1,))
    yield r
    r.close()


@pytest.mark.parametrize("state", ["downloading", "verifying", "staged", "smoke_testing",
                                   "trial", "committed"])
def test_kill9_at_each_state_recovers_one_consistent_model(
        state: str, tmp_path: Path, broker: Mosquitto, repo: Repo) -> None:
    log = tmp_path / "device.log"
    log.write_text("")
    state_dir = tmp_path / f"state-{DEV}"
    reports = Reports(broker.port, DEV)
    reports.set_desired(1, 2)  # retained: waiting for the agent when it connects
    crashing = make_agent(tmp_path, DEV, broker.port, repo, log, crash_at=state,
                          duration_s=0.3)
    restarted = make_agent(tmp_path, DEV, broker.port, repo, log, duration_s=0.3)
    try:
        crashing.start(wait=False)
        assert crashing.proc is not None
        assert crashing.proc.wait(60) == CRASH_EXIT, crashing.output()
        crashing.stop()
        record = json.loads((state_dir / "ota" / "logs.json").read_bytes())
        assert record["state"] == state  # died right after persisting it

        restarted.start()
        undone = state == "trial"
        final, live = ("rolled_back", 1) if undone else ("committed", 2)
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"))
        assert done["state"] == final, reports.summary()
        if undone:
            assert done["reason"] == "interrupted-trial"
        time.sleep(0.5)  # nothing else happens: the retained desired state is settled
        assert reports.ota()[-1]["state"] == final, reports.summary()

        assert restarted.query("models")["result"][0]["version"] == live
        ota = restarted.query("ota")["result"]
        assert ota["state"] == final and ota["live"]["version"] == live
        installed = sorted(p.name for p in (state_dir / "models" / "logs").iterdir())
        assert installed == ([] if undone else [ota["committed"]["file"]])
        assert [p.name for p in (state_dir / "ota" / "downloads" / "logs").iterdir()] == []

        lines = [f"{text} after-restart-{i}" for i, text in enumerate(traffic(20, seed=5))]
        with open(log, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
        reports.wait_results(lines)
        assert {v for v, item in reports.result_items() if item["text"] in lines} == {live}
        assert restarted.query("metrics")["result"]["counters"].get("inference_errors", 0) == 0
    finally:
        restarted.stop()
        reports.close()


def test_the_agent_has_no_crash_hook_of_its_own() -> None:
    """The fault comes from the test's wrapper; nothing in the agent ends its own process
    abruptly, so no environment or config can crash a production unit on purpose."""
    root = Path(__file__).resolve().parents[1] / "agent"
    calls = [f"{path.relative_to(root.parent)}:{node.lineno}"
             for path in sorted(root.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Attribute) and node.attr == "_exit"]
    assert calls == []
