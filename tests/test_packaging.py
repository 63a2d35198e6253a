"""How the project is built and tested: the test extra brings torch, CI fails without it instead of
skipping the parity tests, and the CUDA module is built by default only where a GPU driver is."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fusetrain

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_PARENT = Path(fusetrain.__file__).resolve().parents[1]


def test_the_test_extra_brings_torch_and_the_notebook_runner():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    test = {re.split(r"[<>=\[ ]", r)[0]: r for r in project["optional-dependencies"]["test"]}
    assert test["torch"] == "torch==2.13.0"
    assert {"pytest", "scikit-learn", "matplotlib", "mnist1d", "nbclient", "ipykernel"} <= set(test)
    assert any(d.startswith("tqdm") for d in project["dependencies"])


def test_under_ci_a_missing_torch_fails_the_run(tmp_path):
    (tmp_path / "torch.py").write_text("raise ImportError('no torch in this environment')\n")
    env = dict(os.environ, CI="true",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_history.py")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "CI=true but torch cannot be imported" in proc.stdout + proc.stderr
    env["CI"] = "false"  # locally the same run passes (the parity tests would skip)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _configure(tmp_path, *defines):
    cmake = shutil.which("cmake")
    pybind11 = pytest.importorskip("pybind11", reason="configuring the build needs pybind11 and cmake")
    if cmake is None:
        pytest.skip("configuring the build needs cmake")
    cmd = [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-DPython_EXECUTABLE={sys.executable}",
           f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", *defines]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cuda_is_built_by_default_only_with_a_driver(tmp_path):
    has_nvcc = shutil.which("nvcc") is not None
    has_driver = shutil.which("nvidia-smi") is not None or os.path.exists("/proc/driver/nvidia/version")
    if not has_nvcc or has_driver:
        pytest.skip("this check needs a machine with nvcc and no GPU driver (like the development machines)")
    proc = _configure(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "fusetrain: no NVIDIA driver found, building the CPU module only" in proc.stdout
    assert "building the CUDA module" not in proc.stdout
    bad = _configure(tmp_path, "-DFUSETRAIN_CUDA=maybe")
    assert bad.returncode != 0 and "FUSETRAIN_CUDA must be AUTO, ON or OFF, got 'maybe'" in bad.stderr
