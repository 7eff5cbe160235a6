"""The Flax GLM: output contract, information flow through the mask, parameter counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax.model.glm import GLM, GLMConfig, init_params

MARKERS = (5, 6, 7)
CONFIG = GLMConfig(vocab_size=128, num_layers=2, hidden=32, heads=4, max_len=16, blank_markers=MARKERS)
# [CLS] a [M] b [M] c | sop x y | sop z
BATCH = {
    "inputs": np.array([[3, 20, 5, 21, 5, 22, 8, 30, 31, 8, 32, 0]], np.int32),
    "segment_ids": np.array([[1] * 11 + [0]], np.int32),
    "span_ids": np.array([[0, 0, 0, 0, 0, 0, 2, 2, 2, 1, 1, 0]], np.int32),
}
PART_A, PART_B = range(0, 6), range(6, 11)


@pytest.fixture(scope="module")
def model():
    params = nn.unbox(init_params(CONFIG, jax.random.key(0), 12))
    apply = jax.jit(lambda batch: GLM(CONFIG).apply({"params": params}, batch))
    return apply


def _with_token(position, token):
    batch = {k: v.copy() for k, v in BATCH.items()}
    batch["inputs"][0, position] = token
    return batch


def test_logits_are_float32_batch_length_vocab(model):
    logits = model(BATCH)
    assert logits.shape == (1, 12, 128) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("position", PART_B)
def test_part_a_does_not_see_part_b(model, position):
    before, after = model(BATCH), model(_with_token(position, 99))
    np.testing.assert_array_equal(before[0, : PART_A.stop], after[0, : PART_A.stop])
    assert not np.allclose(before[0, position], after[0, position])  # the change does flow forward


@pytest.mark.parametrize("position", PART_B)
def test_part_b_is_causal(model, position):
    before, after = model(BATCH), model(_with_token(position, 99))
    np.testing.assert_array_equal(before[0, :position], after[0, :position])


def test_part_b_sees_all_of_part_a(model):
    before, after = model(BATCH), model(_with_token(5, 99))  # last Part A token
    for q in PART_B:
        assert not np.allclose(before[0, q], after[0, q])


def test_padding_does_not_change_real_positions(model):
    longer = {k: np.pad(v, ((0, 0), (0, 4))) for k, v in BATCH.items()}
    params = nn.unbox(init_params(CONFIG, jax.random.key(0), 16))
    a = GLM(CONFIG).apply({"params": params}, BATCH)
    b = GLM(CONFIG).apply({"params": params}, longer)
    np.testing.assert_allclose(a[0, :11], b[0, :11], rtol=1e-5, atol=1e-5)


def test_logits_are_final_hidden_times_word_embeddings():
    """Tied output, no bias: logits = final LayerNorm output @ word_embeddings^T."""
    params = nn.unbox(init_params(CONFIG, jax.random.key(0), 12))
    logits, state = GLM(CONFIG).apply({"params": params}, BATCH, capture_intermediates=True)
    hidden = state["intermediates"]["final_layernorm"]["__call__"][0]
    expected = hidden @ params["word_embeddings"]["embedding"].T
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
