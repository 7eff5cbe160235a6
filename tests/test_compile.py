"""Compile-only mode: memory and FLOP figures for local devices, and for a TPU topology from CPU."""

import importlib.util
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT

from glm_jax.compile import compile_report, format_report
from glm_jax.config import load_config_file


def _tiny(**mesh):
    c = load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 64, 8
    c.data.batch_size, c.data.seq_len = 8, 64
    for axis, size in mesh.items():
        c.mesh[axis] = size
    return c


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_compile_report_on_cpu_mesh():
    report = compile_report(_tiny(data=2, fsdp=2, tensor=2), jax.devices()[:8])
    assert report["devices"] == 8 and report["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    # fp32 parameters; the big matrices are split 4 ways (fsdp x tensor), the rest is replicated.
    assert 0 < report["params_bytes"] < 4 * report["parameters"]
    assert report["opt_state_bytes"] >= 2 * report["params_bytes"]  # Adam's two moments
    assert report["temp_bytes"] > 0 and report["model_flops"] > 6 * report["parameters"] * 8 * 64 * 0.5
    assert "per device: parameters" in format_report(report)


def test_sharding_shrinks_per_device_parameters():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices")
    replicated = compile_report(_tiny(data=8), jax.devices()[:8])["params_bytes"]
    sharded = compile_report(_tiny(data=1, fsdp=8), jax.devices()[:8])["params_bytes"]
    np.testing.assert_array_less(sharded, replicated / 3)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu is not installed (.ci/run installs it)")
def test_compile_for_a_tpu_topology_from_cpu():
    flags = ["--topology=v5p:2x2x1", "--config.mesh.data=1", "--config.mesh.fsdp=4", "--config.data.batch_size=8"]
    command = [sys.executable, "-m", "glm_jax.compile", "--config", str(ROOT / "configs/glm_tiny.py"), *flags]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": "", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 x TPU v5" in result.stdout and "per device: parameters" in result.stdout
