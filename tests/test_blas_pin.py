"""The OpenBLAS kernel pin that makes the shipped bundle's bytes the same on any x86-64."""

from __future__ import annotations

import pytest

from nanomodel.blas_pin import CORETYPE, pinned_env

pytestmark = pytest.mark.unit

AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512f\n"
NO_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx\n"


def test_an_avx2_cpu_gets_the_pinned_kernel_and_the_rest_of_the_environment() -> None:
    env = pinned_env({"PATH": "/usr/bin"}, AVX2, "x86_64")
    assert env == {"PATH": "/usr/bin", "OPENBLAS_CORETYPE": CORETYPE}


def test_a_cpu_without_avx2_keeps_openblas_own_choice() -> None:
    # Haswell's kernels would stop such a CPU with an illegal instruction
    assert pinned_env({}, NO_AVX2, "x86_64") is None
    assert pinned_env({}, "no flags line at all", "x86_64") is None


def test_other_architectures_keep_openblas_own_choice() -> None:
    assert pinned_env({}, AVX2, "aarch64") is None


def test_a_choice_already_made_is_left_alone() -> None:
    assert pinned_env({"OPENBLAS_CORETYPE": "SkylakeX"}, AVX2, "x86_64") is None
