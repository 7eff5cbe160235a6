"""Model FLOP accounting: the matmul parameter count, the formula on hand-computed cases, the CPU peak."""

import types

import flax.linen as nn
import jax
import pytest

from glm_jax.model.glm import GLMConfig, init_params
from glm_jax.training import chips, flops

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


def test_train_flops_count_the_output_projection_where_logits_are_computed():
    # Logits at 4 rows x 8 gathered slots of 4 x 25 tokens: the layers see all 100, the tied output 32.
    layers, output = 3 * 12 * 32**2, 256 * 32
    expected = 6 * (layers * 100 + output * 32) + 12 * 3 * 32 * 1000
    assert flops.layer_matmul_params(CONFIG) + output == flops.matmul_params(CONFIG)
    assert flops.train_flops(CONFIG, tokens=100, visible_pairs=1000, logit_tokens=32) == expected
    assert flops.train_flops(CONFIG, 100, 1000, logit_tokens=100) == flops.train_flops(CONFIG, 100, 1000)


def test_peak_comes_from_config_or_is_measured():
    assert flops.peak_flops_per_device(1.5e12) == (1.5e12, "train.peak_flops")
    peak, source = flops.peak_flops_per_device()
    assert "cpu" in source.lower() and "best of" in source and peak > 1e8
    assert flops.peak_flops_per_device()[0] == peak  # measured once per process
    assert chips.chip("TPU v5p").peak_flops == pytest.approx(459e12) and chips.chip("TPU v5 lite").hbm_gib == 16
    assert chips.chip("cpu") is None


def test_measured_peak_is_the_best_trial(monkeypatch):
    """A trial slowed down by other work on the machine does not lower the peak (and inflate MFU)."""
    times = iter([0.0, 9.0, 10.0, 10.5, 20.0, 20.25, 30.0, 34.0])  # trials of 1.0, 0.5, 0.25 and 4.0 s
    monkeypatch.setattr(flops, "time", types.SimpleNamespace(perf_counter=lambda: next(times)))
    assert flops.measured_matmul_peak.__wrapped__(size=64, trials=4) == 2 * 64**3 / 0.25
