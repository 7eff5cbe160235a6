"""Logits only where scored: the gathered Part B path gives the loss sums and gradients of the
full-logits path on real pipeline batches, its capacity comes from the objective's bound, and a
batch over it is a clear error before the step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax import config as config_lib
from glm_jax import workdir as workdir_lib
from glm_jax.data import pipeline, span_lengths, tasks
from glm_jax.model.glm import init_params
from glm_jax.training import losses
from glm_jax.training import objective as objective_lib

SEQ_LEN = 64


def _config(**train):
    c = config_lib.base_config()
    c.model.update(num_layers=2, hidden=32, heads=2, dropout=0.1, attention_dropout=0.1)
    c.data.update(seq_len=SEQ_LEN, batch_size=8)
    c.train.update(steps=10, **train)
    return c


@pytest.fixture(scope="module")
def batch():
    """A real pretraining batch (default short-span task) of 8 rows of 64 positions."""
    c = _config()
    return next(pipeline.TrainStream(c.data.task, SEQ_LEN, 8, seed=3))


@pytest.fixture(scope="module")
def model():
    trainer, _ = workdir_lib.trainer_for(_config())
    params = nn.unbox(init_params(trainer.glm_config, jax.random.key(1), SEQ_LEN))
    return trainer.glm_config, params


def test_scored_positions_keep_order_and_mark_empty_slots():
    weights = jnp.array([[0, 0, 1, 1, 0, 1], [1, 0, 0, 0, 0, 0], [0] * 6, [1, 1, 1, 1, 1, 0]])
    positions, valid, count = losses.scored_positions(weights, 4)
    np.testing.assert_array_equal(positions[:3], [[2, 3, 5, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(valid[:3], [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(positions[3], [0, 1, 2, 3])  # the fifth is over capacity: dropped
    np.testing.assert_array_equal(count, [3, 1, 0, 5])


def test_capacity_comes_from_the_objective_bound():
    """The data side derives the bound from the task's objective; the engine rounds it to the capacity."""
    c = config_lib.base_config()
    c.data.seq_len = 512
    assert span_lengths.short_spans_max_scored(512) == tasks.max_scored(c.data.task, 512) == 157
    assert objective_lib.scored_capacity(c, 157) == 160  # short spans: 157 rounded up to a multiple of 8
    c.data.seq_len = 128
    assert workdir_lib.pretraining_max_scored(c) == 68 and objective_lib.scored_capacity(c, 68) == 72
    for task in ("glm_default_doc", "glm_default_sent", "glm_default_10b"):  # a span may be the whole text
        c.data.task = task
        assert workdir_lib.pretraining_max_scored(c) == 128, task
        assert objective_lib.scored_capacity(c, 128) == 0, task
    c.data.task, c.data.pack = "glm_default_short_spans", True  # packed short examples: unknown
    assert workdir_lib.pretraining_max_scored(c) == 128
    c.data.pack, c.train.scored_capacity = False, 50  # set: rounded up
    assert objective_lib.scored_capacity(c, 68) == 56
    c.train.scored_capacity = 0  # off
    assert objective_lib.scored_capacity(c, 68) == 0
    c.data.task = "not_registered"
    assert workdir_lib.pretraining_max_scored(c) == 128  # nothing known
    with pytest.raises(ValueError, match="train.scored_capacity"):
        config_lib.validate(_config(scored_capacity=-2), 8)


def test_real_rows_stay_within_the_bound(batch):
    rows = np.count_nonzero(batch["loss_weights"] > 0, axis=1)
    bound = span_lengths.short_spans_max_scored(SEQ_LEN)
    assert 0 < rows.max() <= bound < SEQ_LEN
    assert workdir_lib.trainer_for(_config())[0].scored_capacity == 48


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_gathered_and_chunked_sums_and_gradients_equal_full_logits(batch, model, label_smoothing):
    """Dropout on (same key in all): the gather only moves the final LayerNorm and output projection,
    and chunks (of the L positions, or of the C gathered ones; 24 does not divide either) only split it."""
    glm_config, params = model
    device = {k: jnp.asarray(v) for k, v in batch.items()}

    def sums_and_grads(capacity, logits_chunk=0):
        def loss(p):
            sums = objective_lib.contract_sums(glm_config, p, device, deterministic=False, rng=jax.random.key(7),
                                             label_smoothing=label_smoothing, capacity=capacity,
                                             logits_chunk=logits_chunk)  # fmt: skip
            return sums["loss_sum"], sums

        grads, sums = jax.jit(jax.grad(loss, has_aux=True))(params)
        return jax.device_get(sums), jax.device_get(grads)

    full_sums, full_grads = sums_and_grads(0)
    assert full_sums["weight_sum"] == np.count_nonzero(batch["loss_weights"])
    for capacity, chunk in ((48, 0), (0, 24), (48, 24)):
        sums, grads = sums_and_grads(capacity, chunk)
        for key in ("loss_sum", "correct_sum", "weight_sum"):
            np.testing.assert_allclose(sums[key], full_sums[key], rtol=1e-6, err_msg=f"{key} {capacity} {chunk}")
        jax.tree.map(_assert_close, grads, full_grads)


def test_chunked_logits_never_build_all_positions_at_once(batch, model):
    """The lowered chunked objective holds [B, chunk, V] logits, never [B, L, V]."""
    glm_config, params = model
    device = {k: jnp.asarray(v) for k, v in batch.items()}

    def lowered_text(chunk):
        def loss(p):
            return objective_lib.contract_sums(glm_config, p, device, logits_chunk=chunk)["loss_sum"]

        return jax.jit(jax.grad(loss)).lower(params).as_text()

    all_positions, one_chunk = (f"{len(batch['inputs'])}x{n}x{glm_config.vocab_size}xf32" for n in (SEQ_LEN, 16))
    assert all_positions in lowered_text(0)
    chunked = lowered_text(16)
    assert all_positions not in chunked and one_chunk in chunked


def _assert_close(actual, desired):
    """Equal to 1e-6 of the array's largest entry: gradients summed over positions in another order
    (C instead of L of them) differ in float32 rounding only."""
    scale = max(float(np.abs(desired).max()), 1e-30)
    assert float(np.abs(actual - desired).max()) <= 1e-6 * scale


def test_train_and_eval_steps_equal_full_logits(batch):
    """The trainer's steps with the derived capacity and with train.scored_capacity=0."""
    gathered, _ = workdir_lib.trainer_for(_config())
    full, _ = workdir_lib.trainer_for(_config(scored_capacity=0))
    assert (gathered.scored_capacity, full.scored_capacity) == (48, 0)
    assert gathered.logit_tokens(8, SEQ_LEN) == 8 * 48 and full.logit_tokens(8, SEQ_LEN) == 8 * SEQ_LEN
    results = []
    for trainer in (gathered, full):
        state = trainer.init_state(0)
        sums = trainer.eval_step(state.params, trainer.device_batch(batch))
        _, metrics = trainer.train_step(state, trainer.device_batch(batch))
        results.append(jax.device_get((sums, metrics)))
    (sums, metrics), (full_sums, full_metrics) = results
    for key in full_sums:
        np.testing.assert_allclose(sums[key], full_sums[key], rtol=1e-6, err_msg=key)
    for key in ("loss", "accuracy", "grad_norm", "update_norm"):
        np.testing.assert_allclose(metrics[key], full_metrics[key], rtol=1e-6, err_msg=key)


def test_a_batch_over_capacity_is_a_clear_error(batch, model):
    trainer, _ = workdir_lib.trainer_for(_config(scored_capacity=8))
    most = int(np.count_nonzero(batch["loss_weights"] > 0, axis=1).max())
    assert trainer.scored_capacity == 8 < most
    message = rf"holds {most} scored \(Part B\) targets, more than the 8 per row of train.scored_capacity"
    with pytest.raises(objective_lib.ScoredCapacityError, match=message):
        trainer.device_batch(batch)
    with pytest.raises(ValueError, match="raise --config.train.scored_capacity to at least"):
        trainer.device_batch(batch)
    trainer.put_batch(batch)  # rows scored with full logits (zero-shot) are placed as they are
    # A batch that never passed the host check is not dropped silently either: its loss is NaN.
    glm_config, params = model
    sums = objective_lib.contract_sums(glm_config, params, {k: jnp.asarray(v) for k, v in batch.items()}, capacity=8)
    assert np.isnan(sums["loss_sum"])
