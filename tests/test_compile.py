"""Compile-only mode: memory and FLOP figures for local devices, and for a TPU topology from CPU."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT

from glm_jax.compile import with_attention
from glm_jax.compile_report import compile_report, format_comparison, format_report
from glm_jax.config import load_config_file
from glm_jax.data import span_lengths
from glm_jax.training.hlo_buffers import quadratic_buffers

NO_LIBTPU = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None, reason="libtpu is not installed (.ci/run installs it)"
)


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


def _topology_command(*args):
    """Runs `args` in a fresh Python on CPU (libtpu then loads there, never in the test process), without the
    suite's compilation cache (its programs are for TPU devices that are not here)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS="", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@NO_LIBTPU
def test_compile_for_a_tpu_topology_from_cpu():
    flags = ["--topology=v5p:2x2x1", "--config.mesh.data=1", "--config.mesh.fsdp=4", "--config.data.batch_size=8"]
    out = _topology_command("-m", "glm_jax.compile", "--config", str(ROOT / "configs/glm_tiny.py"), *flags)
    assert "4 x TPU v5" in out and "per device: parameters" in out
    assert "attention splash (attention_dropout 0)" in out  # auto on a TPU: the kernel, not interpret mode
    assert "fits: yes" in out and "of 95 GiB" in out


@NO_LIBTPU
def test_compare_attention_for_a_tpu_topology():
    # L = 256: the kernel broadcasts segment ids and its logsumexp over 128 lanes ([.., L, 128] arrays).
    flags = ["--topology=v5p:2x2x1", "--config.data.batch_size=4", "--config.data.seq_len=256", "--compare_attention"]
    out = _topology_command("-m", "glm_jax.compile", "--config", str(ROOT / "configs/glm_tiny.py"), *flags)
    cells = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("  ")]
    rows = {name: values for name, *values in cells}
    assert rows["attention"] == ["xla", "splash"] and rows["fits"][1].startswith("yes")
    dense, kernel = rows["[.., L, L] buffers"]
    assert kernel == "none" and re.match(r"f32\[1,4,256,256\]", dense), dense


def test_quadratic_buffers_of_hlo_text():
    hlo = """
      %fusion.1 = f32[2,16,8192,8192]{3,2,1,0} fusion(bf16[2,8192,16,64]{3,2,1,0} %a), kind=kLoop
      %mask = pred[2,1,8192,8192]{3,2,1,0} broadcast(pred[8192,8192] %m)
      %logits = f32[16384,15296]{1,0} dot(f32[16384,1024] %x, f32[1024,15296] %w)
      %gathered = f32[2,104,30592]{2,1,0} dot(f32[2,104,1024] %y, f32[1024,30592] %e)
      %mlp = f32[2,8192,4096]{2,1,0} fusion(f32[2,8192,1024] %h), kind=kLoop
    """
    found = quadratic_buffers(hlo, 8192, 30592, vocab_shards=2)
    assert found.length_by_length == ("f32[2,16,8192,8192]", "pred[2,1,8192,8192]", "pred[8192,8192]")
    assert found.length_by_vocab == ("f32[16384,15296]",)  # [B * L, V / 2]; [B, C, V] at C scored slots is not
    other = quadratic_buffers(hlo, 4096, 30592, vocab_shards=2)  # L x L needs two axes of exactly L
    assert other.length_by_length == () and other.length_by_vocab == ("f32[16384,15296]",)
    # At L = 512 the [1024, V] embedding gradient is no [2 * L, V] logits: 1024 is the hidden size.
    assert quadratic_buffers(hlo, 512, 30592).length_by_vocab == ("f32[1024,30592]",)
    assert quadratic_buffers(hlo, 512, 30592, model_sizes=(1024, 4096)).length_by_vocab == ()


def _long_tiny(attention, scored_capacity=-1):
    c = with_attention(_tiny(), attention)
    c.data.batch_size, c.data.seq_len, c.train.scored_capacity = 2, 1024, scored_capacity
    return c


def test_xla_attention_has_length_by_length_buffers_and_splash_none():
    """On one CPU device (splash in interpret mode): the dense path builds [B, heads, L, L] scores, the
    splash path nothing quadratic; logits at every position (scored_capacity 0) are [B, L, V]."""
    dense = compile_report(_long_tiny("xla", scored_capacity=0), jax.devices()[:1])
    assert "f32[2,8,1024,1024]" in dense["length_by_length"]
    assert dense["length_by_vocab"]  # [2, 1024, 8064] logits
    splash = _long_tiny("splash")
    kernel = compile_report(splash, jax.devices()[:1], max_scored=span_lengths.short_spans_max_scored(1024))
    assert kernel["splash_interpret"] and kernel["attention"] == "splash"
    assert kernel["length_by_length"] == () and kernel["length_by_vocab"] == ()
    assert kernel["temp_bytes"] < dense["temp_bytes"]
    table = format_comparison([dense, kernel])
    assert "xla" in table and "splash" in table and "unknown (pass --hbm_gib)" in table


# Runs in a subprocess (libtpu loads there): the compiled splash step of glm_large at seq 8192 for 4
# v5p chips (one row per chip), and the lowered xla step, as JSON. One layer: every layer is the
# same program, so one shows what all build; the memory figures are not the whole model's.
_GLM_LARGE_8K = """
import json, sys
from glm_jax import compile as C
from glm_jax.config import load_config_file
from glm_jax import compile_report as R
from glm_jax.training.hlo_buffers import quadratic_buffers

devices = C.topology_devices("v5p:2x2x1")
c = load_config_file(sys.argv[1])
c.model.num_layers, c.data.batch_size, c.model.vocab_size = 1, 4, 30592
splash = R.compile_report(C.with_attention(c, "splash"), devices, keep_hlo=True, max_scored=C.task_max_scored(c))
dense = C.with_attention(c, "xla")
dense.train.scored_capacity = dense.train.logits_chunk = 0  # logits at every position, all at once
lowered, trainer = R.lower_train_step(dense, devices)
xla = quadratic_buffers(lowered.as_text(dialect="hlo"), c.data.seq_len, trainer.glm_config.vocab_size)
hlo = splash.pop("hlo")
splash["mosaic_calls"] = hlo.count("tpu_custom_call")
print(json.dumps({"splash": splash, "xla": [xla.length_by_length, xla.length_by_vocab]}))
"""


@NO_LIBTPU
def test_splash_step_of_glm_large_8k_has_no_quadratic_buffer():
    """The compiled splash train step of glm_large at seq 8192 for TPU v5p (the Mosaic kernel, not
    interpret mode) holds no [.., L, L] and no [.., L, V] array; the xla step (logits at every
    position) holds both, so the inspection does fail where it should."""
    out = _topology_command("-c", _GLM_LARGE_8K, str(ROOT / "configs/glm_large_8k.py"))
    result = json.loads(out.strip().splitlines()[-1])
    splash, (xla_by_length, xla_by_vocab) = result["splash"], result["xla"]
    assert splash["device"] == "TPU v5" and splash["batch"] == [4, 8192]
    assert splash["attention"] == "splash" and not splash["splash_interpret"]
    assert splash["mosaic_calls"] >= 3  # the forward, dq and dkv kernels
    assert splash["length_by_length"] == [] and splash["length_by_vocab"] == []
    assert "f32[4,16,8192,8192]" in xla_by_length and "pred[4,1,8192,8192]" in xla_by_length
    assert any(shape.endswith("[4,8192,30592]") for shape in xla_by_vocab)
