"""The optimizer: which parameters get weight decay (the official code's rule)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT

from glm_jax.config import load_config_file
from glm_jax.model.glm import GLMConfig, init_params
from glm_jax.training import optim


@pytest.mark.parametrize("scan_layers", [False, True])
def test_decay_on_weights_and_embeddings_only(scan_layers):
    config = GLMConfig(
        vocab_size=128, num_layers=2, hidden=32, heads=4, max_len=16, blank_markers=(5,), scan_layers=scan_layers
    )
    mask = optim.decay_mask(init_params(config, jax.random.key(0), 16))
    decayed = {jax.tree_util.keystr(path): flag for path, flag in jax.tree_util.tree_flatten_with_path(mask)[0]}
    assert len(decayed) == 5 + (12 if scan_layers else 24)  # embeddings x3, final LN x2; 12 per layer
    for name, flag in decayed.items():
        assert flag == ("'kernel']" in name or "'embedding']" in name), name
    # The fused QKV bias has three axes and scanned LayerNorm gains two: neither is decayed.
    assert not any(flag for name, flag in decayed.items() if "query_key_value']['bias" in name)


def test_one_step_with_zero_gradients_decays_only_the_weights():
    c = load_config_file(ROOT / "configs/glm_tiny.py").optimizer
    c.warmup_fraction, c.weight_decay = 0.0, 0.1
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3, 2))}, "norm": {"scale": jnp.ones(4)}}
    optimizer = optim.make_optimizer(c, steps=10)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = optimizer.update(zeros, optimizer.init(params), params)
    lr = float(optim.learning_rate_schedule(c, 10)(0))
    np.testing.assert_allclose(updates["dense"]["kernel"], -lr * 0.1 * np.ones((2, 3)), rtol=1e-6)
    assert not np.any(updates["dense"]["bias"]) and not np.any(updates["norm"]["scale"])
