"""The splash kernel (Pallas interpret mode, float32) against the XLA reference on GLM's mask."""

import collections
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax.model import splash
from glm_jax.model.attention import dot_product_attention
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.training import sharding

L, HEADS, HEAD_DIM, BLOCK = 512, 2, 128, 128
TOL = 1e-5


def _row(examples, length=L):
    """segment_ids and last_visible of one row: `examples` are (Part A, Part B) lengths, packed
    from index 0, the rest padding (segment 0, last_visible = its own index, as the layout gives)."""
    segment_ids = np.zeros(length, np.int32)
    last_visible = np.arange(length, dtype=np.int32)
    start = 0
    for number, (part_a, part_b) in enumerate(examples, start=1):
        end = start + part_a + part_b
        assert end <= length
        segment_ids[start:end] = number
        last_visible[start : start + part_a] = start + part_a - 1  # Part A sees its whole Part A
        start = end  # Part B keeps last_visible = q: causal
    return segment_ids, last_visible


# Rows: packed examples then padding; an example whose Part A (100..300) crosses the 128-blocks
# at 128 and 256 (its queries in block 0 need kv blocks 1 and 2, above the diagonal); a row that
# is one example entirely Part A; a row that is almost causal (Part A of one token), no padding.
ROWS = [
    [(60, 40), (30, 50), (20, 10), (5, 100)],
    [(60, 40), (201, 120)],
    [(L, 0)],
    [(1, L - 1)],
]


def _batch(rows=ROWS):
    segment_ids, last_visible = (np.stack(a) for a in zip(*(_row(r) for r in rows), strict=True))
    return jnp.asarray(segment_ids), jnp.asarray(last_visible)


def _dense_mask(segment_ids, last_visible):
    """`[B, 1, L, L]`: q sees k iff same real segment and k <= last_visible[q] (the formula, by hand)."""
    key = jnp.arange(segment_ids.shape[-1])
    same = (segment_ids[:, :, None] == segment_ids[:, None, :]) & (segment_ids[:, :, None] > 0)
    return (same & (key[None, None, :] <= last_visible[:, :, None]))[:, None]


def _inputs(batch_size, seed=0):
    keys = jax.random.split(jax.random.key(seed), 4)
    shape = (batch_size, L, HEADS, HEAD_DIM)
    q, k, v, cotangent = (jax.random.normal(key, shape, jnp.float32) for key in keys)
    return q, k, v, cotangent


def _value_and_grads(attend, q, k, v, cotangent):
    """Outputs and d(loss)/d(q, k, v) of loss = sum(outputs * cotangent)."""

    def loss(q, k, v):
        out = attend(q, k, v)
        return jnp.sum(out * cotangent), out

    (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
    return out, grads


def _real_only(cotangent, segment_ids):
    """The cotangent of a loss over real positions only (as in training)."""
    return cotangent * (segment_ids > 0)[:, :, None, None]


@jax.jit
def _reference(q, k, v, cotangent, segment_ids, last_visible):
    mask = _dense_mask(segment_ids, last_visible)
    attend = lambda q, k, v: dot_product_attention(q, k, v, mask)  # noqa: E731
    return _value_and_grads(attend, q, k, v, cotangent)


@jax.jit
def _splash_value_and_grads(q, k, v, cotangent, segment_ids, last_visible):
    attend = lambda q, k, v: splash.splash_attention(  # noqa: E731
        q, k, v, segment_ids, last_visible, interpret=True, block_q=BLOCK, block_kv=BLOCK
    )
    return _value_and_grads(attend, q, k, v, cotangent)


def _max_error(a, b, real):
    return float(jnp.max(jnp.abs(jnp.where(real[:, :, None, None], a - b, 0.0))))


def test_forward_and_gradients_match_reference():
    segment_ids, last_visible = _batch()
    q, k, v, cotangent = _inputs(len(ROWS))
    cotangent = _real_only(cotangent, segment_ids)
    out, grads = _splash_value_and_grads(q, k, v, cotangent, segment_ids, last_visible)
    ref_out, ref_grads = _reference(q, k, v, cotangent, segment_ids, last_visible)

    real = segment_ids > 0
    assert bool(jnp.all(jnp.isfinite(out))), "non-finite outputs (padding rows included)"
    assert _max_error(out, ref_out, real) < TOL
    everywhere = jnp.ones_like(real)  # gradients agree at padding positions too (both zero: no leak)
    for name, grad, ref_grad in zip("qkv", grads, ref_grads, strict=True):
        assert bool(jnp.all(jnp.isfinite(grad))), f"non-finite d{name}"
        error = _max_error(grad, ref_grad, everywhere)
        assert error < TOL, f"d{name} differs from the reference by {error}"
    # Nothing flows into padding keys or out of padding queries.
    padding = ~real[:, :, None, None]
    for name, grad in zip("qkv", grads, strict=True):
        assert float(jnp.max(jnp.abs(jnp.where(padding, grad, 0.0)))) == 0.0, f"d{name} nonzero at padding"

    # The test can fail: a plain causal last_visible (Part A no longer bidirectional) is caught.
    causal = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), segment_ids.shape)
    wrong, _ = _splash_value_and_grads(q, k, v, cotangent, segment_ids, causal)
    assert _max_error(wrong, ref_out, real) > 1e-2


def test_padding_never_leaks_into_real_positions():
    """Whatever last_visible padding has (here -1: it would see nothing) and whatever gradient reaches
    padding outputs, the outputs and gradients at real positions are those of a real-only loss."""
    segment_ids, last_visible = _batch(ROWS[:2])
    last_visible = jnp.where(segment_ids > 0, last_visible, -1)
    q, k, v, cotangent = _inputs(2, seed=2)
    out, grads = _splash_value_and_grads(q, k, v, cotangent, segment_ids, last_visible)
    _, real_grads = _splash_value_and_grads(q, k, v, _real_only(cotangent, segment_ids), segment_ids, last_visible)
    real = segment_ids > 0
    assert bool(jnp.all(jnp.isfinite(out))) and all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    for name, grad, real_grad in zip("qkv", grads, real_grads, strict=True):
        assert _max_error(grad, real_grad, real) < TOL, f"padding changed d{name} at real positions"


def test_sharded_equals_unsharded():
    if jax.device_count() < 2:
        pytest.skip(f"needs at least 2 devices, have {jax.device_count()}")
    devices = jax.devices()[:8] if jax.device_count() >= 8 else jax.devices()[:2]
    mesh = sharding.make_mesh(2, 2, 2, devices) if len(devices) == 8 else sharding.make_mesh(2, 1, 1, devices)
    segment_ids, last_visible = _batch()
    q, k, v, cotangent = _inputs(len(ROWS), seed=1)
    cotangent = _real_only(cotangent, segment_ids)
    expected = _splash_value_and_grads(q, k, v, cotangent, segment_ids, last_visible)

    def sharded(q, k, v, cotangent, segment_ids, last_visible):
        # As the model calls it: the mesh set by jax.set_mesh around tracing.
        attend = lambda q, k, v: splash.splash_attention(  # noqa: E731
            q,
            k,
            v,
            segment_ids,
            last_visible,
            interpret=True,
            block_q=BLOCK,
            block_kv=BLOCK,
            mesh=jax.sharding.get_abstract_mesh(),
        )
        return _value_and_grads(attend, q, k, v, cotangent)

    with jax.set_mesh(mesh):
        got = jax.jit(sharded)(q, k, v, cotangent, segment_ids, last_visible)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=TOL, rtol=0)


def test_model_on_splash_equals_model_on_xla():
    """The GLM's splash path (its call site: layout arrays, the trainer's mesh, scanned and remat layers)."""
    if jax.device_count() < 8:
        pytest.skip(f"needs 8 devices for a (2, 2, 2) mesh, have {jax.device_count()}")
    length = 128
    config = GLMConfig(
        vocab_size=128,
        num_layers=2,
        hidden=64,
        heads=2,
        max_len=length,
        blank_markers=(5, 6, 7),
        scan_layers=True,
        remat="save_dots",
        splash_interpret=True,
    )
    inputs = np.random.RandomState(0).randint(10, 100, (4, length)).astype(np.int32)
    segment_ids, span_ids = np.zeros((4, length), np.int32), np.zeros((4, length), np.int32)
    segment_ids[:, :100], segment_ids[1, 100:120] = 1, 2  # padding after; row 1 packs a second example
    inputs[:, [10, 40]] = 5  # two [MASK]s in Part A (0..59), their spans in Part B (60..99)
    span_ids[:, 60:80], span_ids[:, 80:100] = 1, 2
    batch = {"inputs": inputs, "segment_ids": segment_ids, "span_ids": span_ids}
    params = nn.unbox(init_params(config, jax.random.key(0), length))

    def loss(params, config):
        logits = GLM(config).apply({"params": params}, batch)
        return jnp.sum(jnp.where(segment_ids[..., None] > 0, jax.nn.log_softmax(logits), 0.0))

    assert_model_equals_xla(loss, params, config, "splash")


def assert_model_equals_xla(loss, params, config, attention: str) -> None:
    """`loss(params, config)` and its gradients with `attention` equal the xla path's, on the trainer's
    (2, 2, 2) mesh and logical-axis rules."""
    results = {}
    with jax.set_mesh(sharding.make_mesh(2, 2, 2)), nn.logical_axis_rules(sharding.RULES):
        for path in ("xla", attention):
            run = jax.jit(jax.value_and_grad(loss), static_argnums=1)
            results[path] = run(params, dataclasses.replace(config, attention=path))
    (xla_loss, xla_grads), (fused_loss, fused_grads) = results["xla"], results[attention]
    np.testing.assert_allclose(fused_loss, xla_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(fused_grads), jax.tree.leaves(xla_grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6 * float(np.abs(b).max()) + 1e-9)


def test_block_sizes():
    assert [splash._block(n, None, "block_q") for n in (128, 384, 512, 768, 2048)] == [128, 128, 512, 256, 512]
    q = jnp.zeros((1, 200, 1, 128))
    rows = jnp.ones((1, 200), jnp.int32)
    with pytest.raises(ValueError, match="data.seq_len to a multiple of 128"):
        splash.splash_attention(q, q, q, rows, rows, interpret=True)
    q, rows = jnp.zeros((1, 384, 1, 128)), jnp.ones((1, 384), jnp.int32)
    with pytest.raises(ValueError, match="block_kv=256 must be a multiple of 128 that divides"):
        splash.splash_attention(q, q, q, rows, rows, interpret=True, block_kv=256)


def test_private_splash_api_unchanged():
    problems = splash.private_api_problems()
    assert not problems, "JAX's private splash API changed; update glm_jax/model/splash.py:\n" + "\n".join(problems)


def test_private_api_guard_can_fail(monkeypatch):
    renamed = collections.namedtuple("MaskInfo", ["data_next", "mask_next", "block_mask", "partial_blocks", "q_seq"])
    monkeypatch.setattr(splash._mask_info, "MaskInfo", renamed)
    monkeypatch.setattr(splash._kernel, "_next_nonzero", lambda *a, **k: (0, None, False, True))
    problems = "\n".join(splash.private_api_problems())
    assert "MaskInfo fields are" in problems and "_next_nonzero without block arrays" in problems
