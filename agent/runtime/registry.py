"""Pick the runtime named in config, falling back to the other one with a warning.

A device image may ship only one of ONNX Runtime and LiteRT; a bundle may carry
only one model format. Either way the agent should still run a model rather than
refuse to start, but say loudly that it is not running what was configured.
"""

from __future__ import annotations

import logging
from typing import Literal

from agent.runtime.base import Runtime, RuntimeUnavailable
from contract.bundle import Bundle

log = logging.getLogger("nanofleet.agent.runtime")


class RuntimeLoadError(RuntimeError):
    """The runtime is installed but refused the model bytes (corrupt or wrong format)."""


RUNTIME_NAMES: tuple[str, ...] = ("onnxruntime", "litert")
_FORMATS: dict[str, Literal["onnx", "tflite"]] = {"onnxruntime": "onnx", "litert": "tflite"}


def runtime_format(name: str) -> Literal["onnx", "tflite"] | None:
    """The model format runtime ``name`` loads (None for an unknown name)."""
    return _FORMATS.get(name)


def runtime_class(name: str) -> type[Runtime]:
    """The class for a runtime name (imports nothing heavy: backends import lazily)."""
    if name == "onnxruntime":
        from agent.runtime.onnx import OnnxRuntime

        return OnnxRuntime
    if name == "litert":
        from agent.runtime.litert import LiteRtRuntime

        return LiteRtRuntime
    raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIME_NAMES)}")


def runtime_order(preferred: str) -> list[str]:
    """Preferred runtime first, then the others (pure: the fallback policy)."""
    if preferred not in RUNTIME_NAMES:
        raise ValueError(f"unknown runtime {preferred!r}; choose one of {', '.join(RUNTIME_NAMES)}")
    return [preferred] + [n for n in RUNTIME_NAMES if n != preferred]


def load_runtime(name: str, bundle: Bundle, threads: int = 1) -> Runtime:
    """Load ``bundle``'s model in runtime ``name``, or in the other runtime (with a
    warning) when ``name`` is not installed or the bundle lacks its format."""
    problems: list[str] = []
    for candidate in runtime_order(name):
        fmt = _FORMATS[candidate]
        if fmt not in bundle.manifest.runtimes:
            problems.append(f"{candidate}: bundle has no {fmt} model")
            continue
        try:
            runtime = runtime_class(candidate)(bundle.model_bytes(fmt), threads)
        except RuntimeUnavailable as exc:
            problems.append(f"{candidate}: {exc}")
            continue
        except Exception as exc:  # native loaders raise their own types; name them here
            raise RuntimeLoadError(f"{candidate} could not load {bundle.manifest.runtimes[fmt]}"
                                   f": {type(exc).__name__}: {exc}") from exc
        if candidate != name:
            log.warning("runtime %s unavailable (%s); falling back to %s", name,
                        "; ".join(problems), candidate)
        return runtime
    raise RuntimeUnavailable("no usable runtime for this bundle: " + "; ".join(problems))
