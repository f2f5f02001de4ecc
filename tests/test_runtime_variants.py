"""One runtime's bytes per download: runtime variants of a release.

The bundle reduction (:func:`contract.bundle.runtime_variant`), the variant target
paths against the delegation pattern, the operators' signing of variants, and the
real agent taking a variant delta (base derived from its installed combined bundle)
from a real signed repository over real HTTP, then the next one from the variant."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest

from agent.runtime.base import RuntimeUnavailable
from agent.runtime.registry import load_runtime
from contract.bundle import BundleError, read_bundle, runtime_variant
from contract.tuf_targets import (
    DELTA_PATH_PATTERN,
    ModelTargetInfo,
    RuntimeFormat,
    delta_target_path,
    full_target_path,
    parse_model_info,
)
from hil.models import finetuned, traffic, v1_bundle
from tests.support.mosquitto import Mosquitto
from tests.support.ota_rig import LineWriter, Repo, Reports, make_agent, shuffled

DEV = "variant-dev-1"


def _matches(pattern: str, path: str) -> bool:
    """python-tuf's DelegatedRole path match: fnmatch per "/"-separated part."""
    parts, pattern_parts = path.split("/"), pattern.split("/")
    return len(parts) == len(pattern_parts) and all(
        fnmatch(p, q) for p, q in zip(parts, pattern_parts, strict=True))


def test_runtime_variant_is_deterministic_idempotent_and_one_file() -> None:
    combined = v1_bundle()
    sizes = {}
    for fmt in ("onnx", "tflite"):
        variant = runtime_variant(combined, fmt)
        assert variant == runtime_variant(combined, fmt)
        assert runtime_variant(variant, fmt) is variant  # already that variant
        bundle = read_bundle(variant)
        full = read_bundle(combined)
        assert list(bundle.manifest.runtimes) == [fmt]
        assert [f.path for f in bundle.manifest.files] == [full.manifest.runtimes[fmt]]
        assert bundle.model_bytes(fmt) == full.model_bytes(fmt)
        assert bundle.manifest.golden == full.manifest.golden
        sizes[fmt] = len(variant)
        with pytest.raises(BundleError, match="has no"):
            runtime_variant(variant, "tflite" if fmt == "onnx" else "onnx")
    assert sizes["onnx"] < len(combined) and sizes["tflite"] < len(combined)


def test_variant_paths_and_the_delta_delegation() -> None:
    full = full_target_path("nano-logs", 3, "onnx")
    delta = delta_target_path("nano-logs", 3, 2, "tflite")
    assert full == "models/nano-logs/3/nano-logs-3.onnx.nfb"
    assert delta == "models/nano-logs/3/delta-from-2.tflite.nfd"
    # The online deltas key reaches variant deltas, never a (variant) full bundle.
    assert _matches(DELTA_PATH_PATTERN, delta)
    assert _matches(DELTA_PATH_PATTERN, delta_target_path("nano-logs", 3, 2))
    assert not _matches(DELTA_PATH_PATTERN, full)
    assert not _matches(DELTA_PATH_PATTERN, full_target_path("nano-logs", 3))
    with pytest.raises(ValueError, match="invalid runtime"):
        full_target_path("nano-logs", 3, "pytorch")  # type: ignore[arg-type]
    sha = "ab" * 32
    info = ModelTargetInfo(kind="full", model="nano-logs", slot="logs", version=3,
                           result_sha256=sha, result_length=10, runtime="onnx")
    assert parse_model_info(full, info.model_dump(mode="json")) == info
    # A variant signed under the combined path (or the other runtime's) is refused.
    with pytest.raises(ValueError, match="describe"):
        parse_model_info(full_target_path("nano-logs", 3), info.model_dump(mode="json"))
    with pytest.raises(ValueError, match="describe"):
        parse_model_info(full_target_path("nano-logs", 3, "tflite"),
                         info.model_dump(mode="json"))


def test_variant_loaded_by_the_other_runtime_falls_back_or_fails_clearly() -> None:
    """After a variant update the live bundle holds one runtime: the registry runs it on
    that runtime (with a warning) or, if that runtime is not installed, says why."""
    onnx_only = read_bundle(runtime_variant(v1_bundle(), "onnx"))
    runtime = load_runtime("litert", onnx_only)
    try:
        assert runtime.name == "onnxruntime"
    finally:
        runtime.close()
    try:
        load_runtime("onnxruntime", read_bundle(runtime_variant(v1_bundle(), "tflite")))
    except RuntimeUnavailable:  # pragma: no cover - LiteRT is installed here
        pytest.fail("LiteRT is installed: the tflite variant must load")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    r = Repo(tmp_path / "tuf")
    yield r
    r.close()


def test_operator_signs_variants_next_to_the_combined_bundle(repo: Repo) -> None:
    repo.publish(v1_bundle(), variants=True)
    top = repo.kit.repo.targets().signed.targets
    combined = top[full_target_path("nano-logs", 1)]
    assert "runtime" not in combined.custom  # what old agents read is unchanged
    for fmt in ("onnx", "tflite"):
        target = top[full_target_path("nano-logs", 1, fmt)]
        data = runtime_variant(v1_bundle(), fmt)
        assert (target.length, target.hashes["sha256"]) == (
            len(data), hashlib.sha256(data).hexdigest())
        assert target.custom["runtime"] == fmt and target.custom["kind"] == "full"
        assert target.length < combined.length


@pytest.mark.parametrize("runtime,fmt", [("onnxruntime", "onnx"), ("litert", "tflite")])
def test_agent_takes_its_runtime_variant_delta_then_the_next(
        tmp_path: Path, broker: Mosquitto, repo: Repo, runtime: str,
        fmt: RuntimeFormat) -> None:
    repo.publish(v1_bundle(), variants=True)
    repo.publish(finetuned(2), delta_from=(1,), variants=True)
    log = tmp_path / "device.log"
    log.write_text("")
    agent = make_agent(tmp_path, DEV, broker.port, repo, log, runtime=runtime,
                       duration_s=1.0, min_inferences=10, timeout_s=30.0)
    reports = Reports(broker.port, DEV)
    writer = LineWriter(log, shuffled(traffic(200)), per_second=100).start()
    top = repo.kit.repo
    try:
        agent.start()
        reports.set_desired(1, 2)
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"),
                                timeout=60)
        assert done["state"] == "committed", reports.summary()
        verifying = next(e for e in reports.ota() if e["state"] == "verifying")
        delta_path = delta_target_path("nano-logs", 2, 1, fmt)
        delta = top.targets("deltas").signed.targets[delta_path]
        assert verifying["artifact"] == "delta"
        assert verifying["bytes_downloaded"] == delta.length, reports.summary()
        ota = agent.query("ota")["result"]
        assert ota["committed"]["sha256"] == top.targets().signed.targets[
            full_target_path("nano-logs", 2, fmt)].hashes["sha256"]
        installed = tmp_path / f"state-{DEV}" / "models" / "logs" / ota["committed"]["file"]
        assert list(read_bundle(installed.read_bytes()).manifest.runtimes) == [fmt]
        assert agent.query("models")["result"][0]["version"] == 2

        # v3: the live bundle already is the variant; the delta applies to it directly.
        seen = max(e["seq"] for e in reports.ota())
        repo.publish(finetuned(3, seed=9), delta_from=(2,), variants=True)
        reports.set_desired(2, 3)
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"),
                                timeout=60, after=seen)
        assert done["state"] == "committed", reports.summary()
        verifying = next(e for e in reports.ota()
                         if e["seq"] > seen and e["state"] == "verifying")
        assert verifying["artifact"] == "delta"
        assert verifying["bytes_downloaded"] == top.targets("deltas").signed.targets[
            delta_target_path("nano-logs", 3, 2, fmt)].length
        assert agent.query("models")["result"][0]["version"] == 3
        metrics = agent.query("metrics")["result"]["counters"]
        assert metrics.get("ota_delta_refused", 0) == 0
        # A restart loads the one-runtime bundle on the configured runtime.
        assert agent.stop() == 0
        agent.start()
        assert agent.query("models")["result"][0]["version"] == 3
    finally:
        writer.stop()
        agent.stop()
        reports.close()
