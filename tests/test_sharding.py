"""One train step is the same on every mesh, with scan, remat and microbatches (8 CPU devices)."""

import jax
import numpy as np
import pytest
from conftest import ROOT

from glm_jax.config import load_config_file, model_config
from glm_jax.training import sharding
from glm_jax.training.synthetic import TOKENS, synthetic_batch
from glm_jax.training.trainer import Trainer

VOCAB = 384
pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (tests/conftest.py sets XLA_FLAGS)")


def _config(**overrides):
    c = load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 64, 8
    c.model.dropout = c.model.attention_dropout = 0.0
    c.data.batch_size, c.data.seq_len = 8, 32
    for key, value in overrides.items():
        section, name = key.split("__")
        c[section][name] = value
    return c


def _trainer(mesh_shape=(1, 1, 1), **overrides):
    c = _config(**overrides)
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    return Trainer(c, model_config(c, VOCAB, TOKENS), sharding.make_mesh(*mesh_shape, devices=devices))


def _step(trainer, params=None):
    """Loss and updated parameters of one step from seed-0 parameters (or `params`)."""
    state = trainer.init_state(0)
    if params is not None:
        state = state.replace(params=jax.device_put(params, trainer.state_shardings.params))
    batch = trainer.device_batch(synthetic_batch(8, 32, VOCAB, np.random.default_rng(0)))
    state, metrics = trainer.train_step(state, batch)
    return float(metrics["loss"]), jax.device_get(state.params), state


@pytest.fixture(scope="module")
def reference():
    return _step(_trainer())


def _assert_same(result, reference, params_match=True):
    loss, params, _ = result
    np.testing.assert_allclose(loss, reference[0], rtol=1e-5)
    if params_match:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params, reference[1])


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (2, 2, 2), (1, 1, 8)])
def test_meshes_give_the_same_step(mesh_shape, reference):
    result = _step(_trainer(mesh_shape))
    _assert_same(result, reference)
    kernel = result[2].params["layers_0"]["mlp"]["dense_h_to_4h"]["kernel"]
    data, fsdp, tensor = mesh_shape
    assert kernel.sharding.shard_shape(kernel.shape) == (64 // fsdp, 256 // tensor)


@pytest.mark.parametrize("policy", ["save_dots", "full"])
def test_remat_policies_give_the_same_step(policy, reference):
    _assert_same(_step(_trainer(model__remat=policy)), reference)


def test_microbatches_give_the_same_step(reference):
    _assert_same(_step(_trainer((2, 1, 1), train__microbatches=4)), reference)


def _stack_layers(params):
    """Unrolled parameters (`layers_0`, `layers_1`) → the scanned layout (`layers`, stacked)."""
    params = dict(params)
    layers = [params.pop(f"layers_{i}") for i in range(2)]
    return {**params, "layers": jax.tree.map(lambda *xs: np.stack(xs), *layers)}


def test_scanned_layers_equal_unrolled(reference):
    """A step with scanned layers, from the reference's initial weights restacked, equals it."""
    initial = _stack_layers(jax.device_get(_trainer().init_state(0).params))
    loss, params, _ = _step(_trainer(model__scan_layers=True), params=initial)
    _assert_same((loss, params, None), (reference[0], _stack_layers(reference[1])))


def test_checkpoint_saved_on_one_mesh_restores_on_another(tmp_path):
    from glm_jax.training import checkpoints

    saver = _trainer((8, 1, 1))
    _, _, state = _step(saver)
    mngr = checkpoints.manager(str(tmp_path), saver.config)
    checkpoints.save(mngr, 1, state, data_position=1)
    mngr.wait_until_finished()

    loader = _trainer((2, 2, 2))
    restored, position, _ = checkpoints.restore_latest(
        checkpoints.manager(str(tmp_path), loader.config), loader.abstract_state
    )
    assert position == 1 and int(restored.step) == 1
    kernel = restored.params["layers_0"]["mlp"]["dense_h_to_4h"]["kernel"]
    assert kernel.sharding == loader.state_shardings.params["layers_0"]["mlp"]["dense_h_to_4h"]["kernel"]
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(state))


def test_bfloat16_compute_keeps_float32_parameters_and_moments(reference):
    loss, params, state = _step(_trainer(model__dtype="bfloat16"))
    assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype("float32")}
    assert {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim} == {np.dtype("float32")}
    np.testing.assert_allclose(loss, reference[0], rtol=2e-2)  # bf16 matmuls: same loss to ~1%
