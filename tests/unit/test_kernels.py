"""The search does not depend on the CPU's floating-point kernels: the same small search
(``tests.unit.kernel_search``), run in child processes under other numpy SIMD paths
(``NPY_DISABLE_CPU_FEATURES``) and other OpenBLAS kernels (``OPENBLAS_CORETYPE``), gives the
same trials, the same chosen point and the same booster bytes. Both variables are read when
numpy and OpenBLAS load, so each setting needs a process of its own."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.helpers import REPO


def simd_dispatch() -> list[str]:
    """numpy's dispatched SIMD targets this CPU runs (beyond the build's baseline)."""
    from numpy._core import _multiarray_umath as umath

    return [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]


def kernel_settings() -> dict[str, dict[str, str]]:
    """Environments that make numpy and OpenBLAS take other code paths on this machine."""
    dispatch = simd_dispatch()
    cores = (
        ("Sandybridge", "Prescott") if platform.machine() in ("x86_64", "AMD64") else ("ARMV8",) * 2
    )
    settings = {"default": {}, f"OPENBLAS_CORETYPE={cores[1]}": {"OPENBLAS_CORETYPE": cores[1]}}
    if dispatch:  # numpy's baseline only, and OpenBLAS on an older kernel
        off = " ".join(dispatch)
        settings[f"NPY_DISABLE_CPU_FEATURES={off!r} OPENBLAS_CORETYPE={cores[0]}"] = {
            "NPY_DISABLE_CPU_FEATURES": off,
            "OPENBLAS_CORETYPE": cores[0],
        }
    return settings


def run_search_under(env: dict[str, str]) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE")
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.kernel_search"],
        cwd=REPO,
        env={**clean, **env, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_search_is_the_same_under_other_numerical_kernels():
    settings = kernel_settings()
    with ThreadPoolExecutor(len(settings)) as pool:
        results = dict(zip(settings, pool.map(run_search_under, settings.values()), strict=True))
    reference = results["default"]
    assert len(reference["trials"]) == 14
    for name, result in results.items():
        assert result["trials"] == reference["trials"], name
        assert (result["best"], result["booster_md5"]) == (
            reference["best"],
            reference["booster_md5"],
        ), name
