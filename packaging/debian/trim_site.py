"""Remove from the device venv's site-packages what the agent never loads at run time.

    python3 trim_site.py SITE_PACKAGES

Every rule names what it removes and why; the bytes each rule freed are printed
(the build log shows where the footprint went). A rule that matches nothing is
fine (the other flavour, another version of a wheel). What stays was checked by
loading it: ``tests/test_packaging.py`` runs the packaged agent, both runtimes,
the OTA client (TUF + delta) and ``enroll``'s key/CSR code from the payload, and
the arm64 run does the same under emulation.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# (glob relative to site-packages, why it can go). Globs ending in "/" are directories.
RULES: list[tuple[str, str]] = [
    # Everywhere: test suites, type stubs, C headers and sources, Cython declarations.
    ("**/tests/", "test suites"),
    ("**/test_data/", "test vectors"),
    ("**/*.pyi", "type stubs (only type checkers read them)"),
    ("**/*.pxd", "Cython declarations"),
    ("**/*.h", "C headers"),
    ("**/*.c", "C sources"),
    ("**/*.a", "static libraries for building extensions"),
    ("**/include/", "headers for building extensions"),
    ("bin/", "console scripts of dependencies (the agent has its own entry point)"),
    # numpy: build and test machinery.
    ("numpy/f2py/", "Fortran wrapper generator"),
    ("numpy/distutils/", "build tooling"),
    ("numpy/_pyinstaller/", "PyInstaller hooks"),
    ("numpy/random/_examples/", "examples"),
    ("numpy/_core/_simd.*", "SIMD test module"),
    ("numpy/_core/_multiarray_tests.*", "test extension"),
    ("numpy/_core/_umath_tests.*", "test extension"),
    ("numpy/_core/_rational_tests.*", "test extension"),
    ("numpy/_core/_struct_ufunc_tests.*", "test extension"),
    ("numpy/_core/_operand_flag_tests.*", "test extension"),
    # numpy: subpackages that numpy 2 imports lazily (numpy.random etc. on first use)
    # and that neither the agent, nor either runtime, nor numpy's own functions use
    # (numpy.ma stays: np.unique, np.percentile... reach into it; the HIL run found it).
    ("numpy/random/", "random generators (lazy; unused)"),
    ("numpy/fft/", "FFT (lazy; unused)"),
    ("numpy/polynomial/", "polynomials (lazy; unused)"),
    ("numpy/testing/", "test helpers (lazy; unused)"),
    # cffi's C-declaration parser: cryptography's bindings are compiled ahead of time.
    ("pycparser/", "C parser for cffi's ABI mode (unused: compiled bindings)"),
    ("cffi/", "cffi's Python API (cryptography's compiled bindings load only _cffi_backend)"),
    # ONNX Runtime: the Python session loads onnxruntime_pybind11_state only.
    ("onnxruntime/capi/libonnxruntime.so*", "the C API library (the Python binding has its own "
     "copy of the runtime)"),
    ("onnxruntime/transformers/", "model optimisation tools"),
    ("onnxruntime/quantization/", "quantisation tools"),
    ("onnxruntime/tools/", "conversion tools"),
    ("onnxruntime/datasets/", "sample models"),
    ("onnxruntime/backend/", "the ONNX backend-test API (imports onnx)"),
    # LiteRT: the Interpreter loads _pywrap_litert_interpreter_wrapper + libpywrap_litert_common.
    ("ai_edge_litert/libLiteRtWebGpuAccelerator.so", "WebGPU accelerator"),
    ("ai_edge_litert/libLiteRt.so", "CompiledModel API (the agent uses the Interpreter)"),
    ("ai_edge_litert/tools/", "benchmark and plugin tools"),
    ("ai_edge_litert/vendors/", "NPU vendor plugins"),
    ("ai_edge_litert/aot/", "ahead-of-time compilation"),
    ("ai_edge_litert/schema_py_generated.py", "flatbuffer schema (model building, not running)"),
    ("ai_edge_litert/descriptor_pb2.py", "protobuf descriptors of the converter"),
    # zstandard: the C backend is the one imported; the CFFI backend is a fallback.
    ("zstandard/_cffi.*", "CFFI backend (backend_c is used)"),
    ("zstandard/backend_cffi.py", "CFFI backend (backend_c is used)"),
    # pydantic: plugin for mypy.
    ("pydantic/mypy.py", "mypy plugin"),
    ("pydantic/v1/", "the pydantic 1 compatibility API (imported only as pydantic.v1)"),
]


def size_of(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def trim(site: Path) -> list[tuple[str, int]]:
    """Apply RULES under ``site``; (rule, bytes freed) per rule that matched."""
    freed: list[tuple[str, int]] = []
    for pattern, _why in RULES:
        is_dir = pattern.endswith("/")
        total = 0
        for path in sorted(site.glob(pattern.rstrip("/")), key=lambda p: len(p.parts),
                           reverse=True):
            if not path.exists() and not path.is_symlink():
                continue  # inside a directory removed by this rule already
            if is_dir != (path.is_dir() and not path.is_symlink()):
                continue
            total += size_of(path)
            if is_dir:
                shutil.rmtree(path)
            else:
                path.unlink()
        if total:
            freed.append((pattern, total))
    return freed


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    freed = trim(Path(argv[0]))
    for pattern, n in sorted(freed, key=lambda x: -x[1]):
        print(f"trim: {n / 1e6:7.2f} MB  {pattern}", file=sys.stderr)
    print(f"trim: {sum(n for _, n in freed) / 1e6:7.2f} MB in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
