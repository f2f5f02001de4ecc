"""The agent's real pipeline for tests: the shipped model, a real SQLite spool, a line
queue; not started."""

from __future__ import annotations

from pathlib import Path

from agent.config import AgentConfig
from agent.line_queue import LineQueue
from agent.metrics import Counters
from agent.model import LoadedModel
from agent.model_slot import ModelSlot
from agent.pipeline import Pipeline
from agent.spool import Spool
from nanomodel import default_bundle_path


def real_pipeline(tmp_path: Path) -> tuple[Pipeline, LineQueue, Spool, Counters]:
    """The agent's pipeline with the shipped model and a real spool (not started)."""
    cfg = AgentConfig.model_validate({
        "device_id": "pump-07", "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": "127.0.0.1"},
        "sources": [{"kind": "file", "path": str(tmp_path / "log")}],
        "pipeline": {"batch_max_wait_ms": 20}})
    counters = Counters()
    spool = Spool(tmp_path / "spool.sqlite", 100_000, 64 << 20, counters)
    queue = LineQueue(1000)
    slot = ModelSlot("logs", LoadedModel.load(default_bundle_path(), "onnxruntime"))
    pipeline = Pipeline(cfg, queue, slot, spool, counters, on_committed=lambda: None,
                        is_online=lambda: True)
    return pipeline, queue, spool, counters
