"""The gpu_flash path on CPU: GLM's mask as per-query key ranges, through the XLA versions of tokamax's calls
(the Mosaic kernels' range mask, cuDNN's dense mask), against the xla attention; the config's choices."""

import collections
import functools
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from test_splash import (
    ROWS,
    TOL,
    _batch,
    _inputs,
    _max_error,
    _real_only,
    _reference,
    _value_and_grads,
    assert_model_equals_xla,
)

from glm_jax import config as config_lib
from glm_jax.model import gpu_flash, layout
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.training import chips, sharding
from glm_jax.training.synthetic import TOKENS

KERNELS = ("mosaic", "cudnn")
FAST_CPU_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


@jax.jit
def _ranges(segment_ids, last_visible):
    return layout.key_ranges(segment_ids, last_visible)


@functools.partial(jax.jit, static_argnames=("kernel", "mesh"))
def _fused_value_and_grads(q, k, v, cotangent, segment_ids, last_visible, kernel, mesh=None):
    k_start, k_end = layout.key_ranges(segment_ids, last_visible)
    attend = lambda q, k, v: gpu_flash.gpu_flash_attention(  # noqa: E731
        q, k, v, k_start, k_end, kernel=kernel, reference=True, mesh=mesh
    )
    return _value_and_grads(attend, q, k, v, cotangent)


def test_key_ranges_are_the_mask():
    """Real queries: k_start <= k < k_end is the dense mask, row by row; padding: its own run of padding."""
    segment_ids, last_visible = _batch()
    k_start, k_end = (np.asarray(x) for x in _ranges(segment_ids, last_visible))
    key = np.arange(segment_ids.shape[1])
    in_range = (key[None, None, :] >= k_start[..., None]) & (key[None, None, :] < k_end[..., None])
    real = np.asarray(segment_ids) > 0
    dense = np.asarray(layout.dense_mask(segment_ids, last_visible))[:, 0]
    np.testing.assert_array_equal(in_range[real], dense[real])
    padding_keys = np.broadcast_to(~real[:, None, :], in_range.shape)
    np.testing.assert_array_equal(in_range[~real], padding_keys[~real])  # rows 0, 1: trailing padding, all of it
    assert in_range.any(-1).all(), "a query sees no key"
    # Row 1 by hand: example 1 is 0..99 (Part A 0..59), example 2 is 100..420 (Part A 100..300).
    assert (k_start[1, [0, 59, 60, 99, 100, 300, 301, 420, 421]] == [0, 0, 0, 0, 100, 100, 100, 100, 421]).all()
    assert (k_end[1, [0, 59, 60, 99, 100, 300, 301, 420, 421]] == [60, 60, 61, 100, 301, 301, 302, 421, 512]).all()
    pairs = float(jax.jit(layout.visible_pairs)(segment_ids, last_visible))
    assert pairs == float(dense.sum())
    # Padding between examples sees its own run only: [1 1 0 0 2 2 0], Part A of one token each.
    k_start, k_end = _ranges(jnp.array([[1, 1, 0, 0, 2, 2, 0]]), jnp.array([[0, 1, 2, 3, 4, 5, 6]]))
    assert k_start.tolist() == [[0, 0, 2, 2, 4, 4, 6]] and k_end.tolist() == [[1, 2, 4, 4, 5, 6, 7]]


@pytest.mark.parametrize("kernel", KERNELS)
def test_forward_and_gradients_match_reference(kernel):
    """Packed rows, padding, an all-Part-A row, Part A across the 128-blocks: outputs and dq, dk, dv to 1e-5."""
    segment_ids, last_visible = _batch()
    q, k, v, cotangent = _inputs(len(ROWS))
    cotangent = _real_only(cotangent, segment_ids)
    out, grads = _fused_value_and_grads(q, k, v, cotangent, segment_ids, last_visible, kernel)
    ref_out, ref_grads = _reference(q, k, v, cotangent, segment_ids, last_visible)

    real = segment_ids > 0
    assert bool(jnp.all(jnp.isfinite(out))), "non-finite outputs (padding rows included)"
    assert _max_error(out, ref_out, real) < TOL
    everywhere = jnp.ones_like(real)
    for name, grad, ref_grad in zip("qkv", grads, ref_grads, strict=True):
        error = _max_error(grad, ref_grad, everywhere)
        assert error < TOL, f"d{name} differs from the reference by {error}"
        assert float(jnp.max(jnp.abs(jnp.where(~real[:, :, None, None], grad, 0.0)))) == 0.0, f"d{name} at padding"

    # The test can fail: ranges that end one key early (the last visible key dropped) are caught.
    def short(q, k, v):
        k_start, k_end = layout.key_ranges(segment_ids, last_visible)
        end = jnp.maximum(k_end - 1, k_start + 1)
        return gpu_flash.gpu_flash_attention(q, k, v, k_start, end, kernel=kernel, reference=True)

    assert _max_error(jax.jit(short)(q, k, v), ref_out, real) > 1e-2


@pytest.mark.parametrize("kernel", KERNELS)
def test_sharded_equals_unsharded(kernel):
    if jax.device_count() < 8:
        pytest.skip(f"needs 8 devices for a (2, 2, 2) mesh, have {jax.device_count()}")
    segment_ids, last_visible = _batch()
    q, k, v, cotangent = _inputs(len(ROWS), seed=1)
    cotangent = _real_only(cotangent, segment_ids)
    expected = _fused_value_and_grads(q, k, v, cotangent, segment_ids, last_visible, kernel)
    mesh = sharding.make_mesh(2, 2, 2)
    got = _fused_value_and_grads(q, k, v, cotangent, segment_ids, last_visible, kernel, mesh=mesh)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=TOL, rtol=0)


def _tiny_model_batch(length):
    inputs = np.random.RandomState(0).randint(10, 100, (4, length)).astype(np.int32)
    segment_ids, span_ids = np.zeros((4, length), np.int32), np.zeros((4, length), np.int32)
    segment_ids[:, :100], segment_ids[1, 100:120] = 1, 2  # padding after; row 1 packs a second example
    inputs[:, [10, 40]] = 5  # two [MASK]s in Part A (0..59), their spans in Part B (60..99)
    span_ids[:, 60:80], span_ids[:, 80:100] = 1, 2
    return {"inputs": inputs, "segment_ids": segment_ids, "span_ids": span_ids}


def test_model_on_gpu_flash_equals_model_on_xla():
    """The GLM's gpu_flash path (layout ranges, the trainer's (2, 2, 2) mesh, scanned and remat layers), on the
    Mosaic kernel's XLA version: loss and gradients equal the xla path's. (The kernels differ only in the op
    that reads the ranges, checked for both above.)"""
    if jax.device_count() < 8:
        pytest.skip(f"needs 8 devices for a (2, 2, 2) mesh, have {jax.device_count()}")
    length = 128
    config = GLMConfig(vocab_size=128, num_layers=2, hidden=64, heads=2, max_len=length, blank_markers=(5, 6, 7),
                       scan_layers=True, remat="save_dots", gpu_reference=True)  # fmt: skip
    batch = _tiny_model_batch(length)
    params = nn.unbox(init_params(config, jax.random.key(0), length))

    def loss(params, config):
        logits = GLM(config).apply({"params": params}, batch)
        return jnp.sum(jnp.where(batch["segment_ids"][..., None] > 0, jax.nn.log_softmax(logits), 0.0))

    assert_model_equals_xla(loss, params, config, "gpu_flash")


def test_mosaic_needs_a_multiple_of_128():
    q = jnp.zeros((1, 200, 1, 64))
    rows = jnp.ones((1, 200), jnp.int32)
    with pytest.raises(ValueError, match="Mosaic kernel needs the sequence length to be a multiple of 128"):
        gpu_flash.gpu_flash_attention(q, q, q, rows, rows, kernel="mosaic", reference=True)
    with pytest.raises(ValueError, match="gpu_kernel='flash' is not one of"):
        GLMConfig(vocab_size=128, num_layers=1, hidden=64, heads=2, max_len=8, blank_markers=(5,), gpu_kernel="flash")


def _config():
    """glm_tiny as gpu_flash can run it."""
    c = config_lib.load_config_file(ROOT / "configs" / "glm_tiny.py")
    c.model.update(dtype="bfloat16", attention_dropout=0.0)
    return c


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("model.attention_dropout", 0.1, r"has no dropout on attention probabilities.*\(now 0.1\)"),
        ("model.dtype", "float32", r"set model.dtype=bfloat16 \(now float32\)"),
        ("model.heads", 16, r"a multiple of 8 and at most 128 \(now 12\)"),
        ("model.hidden", 768, r"a multiple of 8 and at most 128 \(now 192\)"),
        ("data.seq_len", 129, r"needs an even data.seq_len .*\(now 129\)"),
        ("mesh.tensor", 3, r"make model.heads \(4\) divisible by mesh.tensor \(3\)"),
    ],
)
def test_what_gpu_flash_cannot_run_is_named(key, value, message):
    config = _config()
    config.model.attention = "gpu_flash"
    config_lib.validate(config, 1)
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=rf"model.attention='gpu_flash' .*{message}, or use model.attention='xla'"):
        config_lib.validate(config, 3 if key == "mesh.tensor" else 1)


def test_auto_picks_gpu_flash_on_gpu_and_says_why_not(caplog):
    config = _config()
    assert config_lib.attention_path(config, "gpu") == "gpu_flash"
    assert config_lib.attention_path(config, "cpu") == "xla"
    config.model.dtype = "float32"
    with caplog.at_level("WARNING"):
        assert config_lib.attention_path(config, "gpu") == "xla"
    assert "using the xla attention, as gpu_flash multiplies in bfloat16" in caplog.text


def test_the_kernel_is_mosaic_on_hopper_and_blackwell_at_multiples_of_128(caplog):
    config = _config()  # seq_len 128
    choices = {cc: config_lib.gpu_flash_kernel(config, cc) for cc in (None, 8.0, 8.9, 9.0, 10.0, 12.0)}
    assert choices == {None: "mosaic", 8.0: "cudnn", 8.9: "cudnn", 9.0: "mosaic", 10.0: "mosaic", 12.0: "cudnn"}
    config.data.seq_len = 192
    with caplog.at_level("WARNING"):
        assert config_lib.gpu_flash_kernel(config, 9.0) == "cudnn"
    assert "cuDNN with the dense mask, as tokamax's Mosaic kernel needs data.seq_len to be a multiple of 128" in (
        caplog.text
    )
    config.model.attention = "gpu_flash"
    glm = config_lib.model_config(config, 64, TOKENS, platform="cpu")
    assert (glm.attention, glm.gpu_kernel, glm.gpu_reference) == ("gpu_flash", "cudnn", True)


def test_gpu_chips_are_known():
    assert chips.chip("NVIDIA H100 80GB HBM3").peak_flops == pytest.approx(989e12)
    assert chips.chip("NVIDIA H100 PCIe").peak_flops == pytest.approx(756e12)
    assert chips.chip("NVIDIA H200").hbm_gib == 141


def test_private_tokamax_api_unchanged():
    problems = gpu_flash.private_api_problems()
    assert not problems, "tokamax's private attention API changed; update glm_jax/model/gpu_flash.py:\n" + "\n".join(
        problems
    )


def test_private_api_guard_can_fail(monkeypatch):
    other_mask = collections.namedtuple("Mask", ["bool_mask", "k_start", "k_end"], defaults=(None, None, None))
    monkeypatch.setattr(gpu_flash._base, "Mask", other_mask)
    monkeypatch.setattr(gpu_flash._jax_nn, "JaxNnDotProductAttention", None)
    problems = "\n".join(gpu_flash.private_api_problems())
    assert "base.Mask(k_start=, k_end=)" in problems and "JaxNnDotProductAttention is gone" in problems


def test_the_device_check_runs_dry_without_tensorflow():
    """`python -m benchmarks.gpu --dry`: the same code as on a GPU, at tiny shapes on one CPU device."""
    command = [sys.executable, "-c", 'import sys; sys.modules["tensorflow"] = sys.modules["seqio"] = None; '
               'sys.argv = ["gpu", "--dry"]; from benchmarks import gpu; gpu.main()']  # fmt: skip
    # One CPU device; the compiler's cheaper passes (the step is compiled twice: about 20 s instead of 40 s).
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": FAST_CPU_COMPILE}
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    steps = [line.split("|")[0].split()[-1] for line in out.stdout.splitlines() if "ms/step" in line]
    assert steps == ["xla", "gpu_flash:mosaic(xla)"], out.stdout
    assert "glm_tiny  L=128   speed-up gpu_flash / xla: " in out.stdout and "failed" not in out.stdout


def test_the_slurm_scripts_xla_flags_are_known_to_xla():
    """XLA stops at start-up on a flag it does not know (a renamed or retired one): every flag
    launch/slurm_gpu.sbatch sets must parse in the installed XLA (its GPU flags parse on CPU too)."""
    script = (ROOT / "launch" / "slurm_gpu.sbatch").read_text()
    block = script[script.index("XLA_GPU_FLAGS=(") : script.index("\n)\n")]
    xla_flags = [line.strip() for line in block.splitlines() if line.strip().startswith("--xla_")]
    assert len(xla_flags) == 10 and "--xla_gpu_enable_latency_hiding_scheduler=true" in xla_flags

    def starts(flags):
        command = [sys.executable, "-c", "import jax; print(jax.jit(lambda x: x + 1)(1))"]
        env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    known = starts(xla_flags)
    assert known.returncode == 0 and known.stdout.strip() == "2", known.stderr[-2000:]
    retired = starts([*xla_flags, "--xla_gpu_graph_level=0"])  # the check can fail: a flag XLA dropped
    assert retired.returncode != 0 and "Unknown flag in XLA_FLAGS: --xla_gpu_graph_level" in retired.stderr
