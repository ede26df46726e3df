"""`make gpu-check` on a machine without a GPU: it says so and succeeds (the GPU path itself needs a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}   # no GPU, even on a GPU machine
    result = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "-C", str(REPO), f"PY={sys.executable}",
                             "STAMP=", "gpu-check"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == \
        "gpu-check: no GPU visible to TensorFlow on this machine; nothing to check (exit 0)"


def test_the_check_itself_runs_on_two_cpu_replicas(tmp_path):
    """The GPU path of the script, smoke-run on a CPU split in two (no GPU is lent to this project's tests)."""
    from kit.data import synthetic

    source = synthetic.make_competition(tmp_path / "source", n_train=64, n_test=4, planted=False)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KIT_LOGICAL_DEVICES": "2", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--on-cpu", "--backbone", "tiny@32",
                             "--images", "64", "--source", str(source), "--data-dir", str(tmp_path / "data")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "devices: 0 GPU(s), 2 replica(s); precision policy float32" in out
    for row in ("input alone | ", "model alone (one batch repeated) | ", "together (the epoch) | "):
        assert row in out
    assert "on input: together is" in out and out.strip().splitlines()[-1].startswith("gpu-check: done in")
