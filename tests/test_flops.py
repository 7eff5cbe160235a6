"""Model FLOP accounting: the matmul parameter count and the formula on a hand-computed case."""

import flax.linen as nn
import jax
import pytest

from glm_jax.model.glm import GLMConfig, init_params
from glm_jax.training import flops

CONFIG = GLMConfig(vocab_size=256, num_layers=3, hidden=32, heads=4, max_len=16, blank_markers=(5, 6, 7))


def test_matmul_params_are_the_kernels_plus_the_tied_output():
    params = nn.unbox(init_params(CONFIG, jax.random.key(0), 8))
    flat = jax.tree_util.tree_leaves_with_path(params)
    kernels = sum(x.size for path, x in flat if "kernel" in jax.tree_util.keystr(path))
    assert flops.matmul_params(CONFIG) == kernels + 256 * 32


def test_train_flops_formula():
    # 6 N T with N = 3 * 12 * 32^2 + 256 * 32, plus 12 * layers * hidden per visible pair.
    n = 3 * 12 * 32**2 + 256 * 32
    assert flops.train_flops(CONFIG, tokens=100, visible_pairs=1000) == 6 * n * 100 + 12 * 3 * 32 * 1000


def test_peak_comes_from_config_or_is_measured():
    assert flops.peak_flops_per_device(1.5e12) == (1.5e12, "train.peak_flops")
    peak, source = flops.peak_flops_per_device()
    assert "cpu" in source.lower() and peak > 1e8
    assert flops.PEAK_FLOPS["TPU v5p"] == pytest.approx(459e12)
