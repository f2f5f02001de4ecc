"""An OTA test rig: a real signed TUF repository served over real HTTP, the real
agent process configured for it, a line writer that keeps results flowing, and
helpers to read the agent's OTA reports from a real broker."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.bundle import read_bundle, runtime_variant
from contract.tuf_targets import ModelTargetInfo, RuntimeFormat, full_target_path
from fleet_server.deltas import build_delta
from fleet_server.repository.repo import DeltaUpload
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.mqtt_client import Collector
from tests.support.tuf_http import RepoServer
from tests.support.tuf_repo import RepoKit, make_repo


class Repo:
    """Operators publish signed releases; the server adds deltas with its online key."""

    def __init__(self, base: Path) -> None:
        self.kit: RepoKit = make_repo(base)
        self.server = RepoServer(self.kit.path).start()
        self.root_file = base / "provisioned-root.json"
        self.root_file.write_bytes(self.kit.repo.root_bytes())
        self.bundles: dict[int, bytes] = {}

    def publish(self, bundle: bytes, *, delta_from: tuple[int, ...] = (),
                minimum_version: int | None = None, variants: bool = False) -> None:
        """``variants``: the operators sign each runtime's variant too and the server
        makes variant deltas as well (what ``nanofleet model publish`` + the server do)."""
        manifest = read_bundle(bundle).manifest
        self.kit.publish(bundle, minimum_version=minimum_version, variants=variants)
        self.bundles[manifest.version] = bundle
        if delta_from:
            self.add_deltas(manifest.version, delta_from,
                            runtimes=(None, "onnx", "tflite") if variants else (None,))

    def add_deltas(self, version: int, bases: tuple[int, ...],
                   runtimes: tuple[RuntimeFormat | None, ...] = (None,)) -> None:
        top = self.kit.repo.targets().signed.targets
        new_combined = self.bundles[version]
        name = read_bundle(new_combined).manifest.name
        uploads = []
        for runtime in runtimes:
            full = top[full_target_path(name, version, runtime)]
            new = runtime_variant(new_combined, runtime) if runtime else new_combined
            for base in bases:
                old = runtime_variant(self.bundles[base], runtime) if runtime \
                    else self.bundles[base]
                base_target = top.get(full_target_path(name, base, runtime))
                info = ModelTargetInfo(
                    kind="delta", model=name, slot=read_bundle(new).manifest.slot,
                    version=version, result_sha256=full.hashes["sha256"],
                    result_length=full.length, base_version=base,
                    base_sha256=base_target.hashes["sha256"] if base_target
                    else hashlib.sha256(old).hexdigest(),
                    delta_format="nfd-1", runtime=runtime)
                uploads.append(DeltaUpload(build_delta(old, new), info))
        self.kit.repo.add_delta_targets(uploads)

    def metadata(self, name: str) -> bytes:
        return (self.kit.path / "metadata" / name).read_bytes()

    def ota_toml(self, boot_id_file: Path | None = None, **trial: Any) -> str:
        settings = {"duration_s": 1.0, "min_inferences": 0, "timeout_s": 20.0} | trial
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
        boot = f'boot_id_file = "{boot_id_file}"\n' if boot_id_file else ""
        return (f'[ota]\nmetadata_url = "{self.server.url}/metadata"\n'
                f'target_base_url = "{self.server.url}/targets"\n'
                f'root_file = "{self.root_file}"\nretry_after_s = 3600\n'
                f"http_timeout_s = 5\ndownload_attempts = 1\n{boot}"
                f"[ota.trial]\n{lines}\n")

    def close(self) -> None:
        self.server.stop()


def shuffled(lines: list[str], seed: int = 3) -> list[str]:
    """``lines`` in a fixed random order (so a writer mixes the labels)."""
    out = list(lines)
    random.Random(seed).shuffle(out)
    return out


class LineWriter:
    """Appends varied log lines to a file at a steady rate (the device's traffic)."""

    def __init__(self, path: Path, lines: list[str], per_second: float = 150.0) -> None:
        self.path = path
        self.source = lines
        self.interval = 1.0 / per_second
        self.written: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LineWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        with open(self.path, "a") as fh:
            while not self._stop.wait(self.interval):
                line = f"{self.source[i % len(self.source)]} #{i}"
                fh.write(line + "\n")
                fh.flush()
                self.written.append(line)
                i += 1

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        return self.written


def make_agent(tmp: Path, device: str, port: int, repo: Repo, log: Path,
               env: dict[str, str] | None = None, crash_at: str | None = None,
               runtime: str | None = None, boot_id_file: Path | None = None,
               **trial: Any) -> AgentProcess:
    state = tmp / f"state-{device}"
    source = f'[[sources]]\nkind = "file"\npath = "{log}"\nstart_at = "beginning"\n'
    model = f'[model]\nruntime = "{runtime}"\n' if runtime else ""
    cfg = write_config(tmp / f"{device}.toml", device, state, port, source,
                       extra=model + '[pipeline]\nbatch_size = 16\nbatch_max_wait_ms = 20\n'
                       + repo.ota_toml(boot_id_file, **trial))
    return AgentProcess(cfg, state, env=env, crash_at=crash_at)


def unique(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for d in docs:
        if d["msg_id"] not in seen:
            seen.add(d["msg_id"])
            out.append(d)
    return out


class Reports:
    """The agent's OTA events and results, read from the broker."""

    def __init__(self, port: int, device: str) -> None:
        self.root = f"nanofleet/v1/dev/{device}"
        self.sub = Collector(port, f"{self.root}/#")

    def set_desired(self, revision: int, version: int, model: str = "nano-logs",
                    **extra: Any) -> None:
        doc = {"revision": revision, "slots": {"logs": {"model": model, "version": version}},
               "rollout_id": f"r{revision}"} | extra
        self.sub.publish(f"{self.root}/desired", json.dumps(doc), retain=True)

    def docs(self, suffix: str) -> list[dict[str, Any]]:
        return unique([json.loads(m.payload) for m in self.sub.on(f"{self.root}/{suffix}")])

    def ota(self) -> list[dict[str, Any]]:
        return sorted(self.docs("ota"), key=lambda d: d["seq"])

    def wait_ota(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
                 after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.ota():
                if event["seq"] > after and pred(event):
                    return event
            time.sleep(0.05)
        raise TimeoutError(f"no matching OTA event; got {self.summary()}")

    def summary(self) -> list[tuple[Any, ...]]:
        return [(e["seq"], e["state"], e["to_version"], e["artifact"], e["reason"])
                for e in self.ota()]

    def result_items(self) -> list[tuple[int, dict[str, Any]]]:
        return [(d["model_version"], item) for d in self.docs("results/logs")
                for item in d["items"]]

    def wait_results(self, texts: list[str], timeout: float = 30.0) -> None:
        want = set(texts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if want <= {item["text"] for _, item in self.result_items()}:
                return
            time.sleep(0.05)
        missing = want - {item["text"] for _, item in self.result_items()}
        raise TimeoutError(f"{len(missing)} lines without a result, e.g. {sorted(missing)[:3]}")

    def close(self) -> None:
        self.sub.close()
