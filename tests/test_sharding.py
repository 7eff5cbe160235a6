"""The train step on a data-parallel mesh of 8 CPU devices equals the same step on one device."""

import jax
import numpy as np
import pytest
from conftest import ROOT

from benchmarks.train_step import _TOKENS, synthetic_batch
from glm_jax import sharding
from glm_jax.config import load_config_file
from glm_jax.trainer import Trainer, model_config


def _config():
    c = load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 32, 2
    c.model.dropout = 0.1
    c.data.batch_size, c.data.seq_len = 8, 32
    return c


def _two_steps(devices):
    c = _config()
    trainer = Trainer(c, model_config(c, 300, _TOKENS), sharding.make_mesh(devices=devices))
    state = trainer.init_state(0)
    losses = []
    for seed in (0, 1):
        batch = trainer.device_batch(synthetic_batch(8, 32, 300, np.random.default_rng(seed)))
        state, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params), state


def test_eight_device_data_parallel_equals_one_device():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets XLA_FLAGS before JAX starts)")
    single_losses, single_params, _ = _two_steps(jax.devices()[:1])
    multi_losses, multi_params, state = _two_steps(jax.devices()[:8])
    np.testing.assert_allclose(multi_losses, single_losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), multi_params, single_params)
    kernel = state.params["layers_0"]["mlp"]["dense_h_to_4h"]["kernel"]
    assert len(kernel.sharding.device_set) == 8  # parameters live on (are replicated over) all devices
