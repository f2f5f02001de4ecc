"""The second LiteRT import path: `tflite_runtime` (numpy<2), in its own venv made by
scripts/bootstrap.sh. Same bundle, same answers as ONNX Runtime in the main venv."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from agent.model import LoadedModel
from nanomodel import default_bundle_path

ROOT = Path(__file__).resolve().parent.parent
TFLITE_PY = ROOT / ".venv-tflite" / "bin" / "python"

LINES = [
    "kernel: EXT4-fs error (device mmcblk0p2): I/O error",
    "sshd[311]: Failed password for root from 10.0.0.9 port 4122 ssh2",
    "systemd[1]: Started Daily apt download activities.",
    "thermal thermal_zone0: critical temperature reached (104 C), shutting down",
]

SCRIPT = """
import json, sys
import numpy
from agent.model import LoadedModel
from nanomodel import default_bundle_path
m = LoadedModel.load(default_bundle_path(), "litert")
m.smoke_test()
probs, anomaly = m.classify(json.loads(sys.argv[1]))
print(json.dumps({"numpy": numpy.__version__, "runtime": m.runtime_name,
                  "modules": sorted(k for k in sys.modules if k.startswith(("tflite", "ai_edge"))),
                  "probs": probs.tolist()}))
"""


def test_tflite_runtime_path_with_numpy_1_gives_the_same_answers(tmp_path):
    assert TFLITE_PY.exists(), ".venv-tflite is missing: run scripts/bootstrap.sh"
    out = subprocess.run([str(TFLITE_PY), "-c", SCRIPT, json.dumps(LINES)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["numpy"].startswith("1.")
    assert "tflite_runtime.interpreter" in doc["modules"]
    assert not any(m.startswith("ai_edge") for m in doc["modules"])  # really the fallback
    onnx = LoadedModel.load(default_bundle_path(), "onnxruntime")
    expected, _ = onnx.classify(LINES)
    np.testing.assert_allclose(np.array(doc["probs"]), expected, atol=1e-5)
