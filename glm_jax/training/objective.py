"""The pretraining objective over contract fields, and where its logits are computed (scored capacity).

The trainer takes any objective of the form `objective(glm_config, params, batch, deterministic=,
rng=) -> sums` (`loss_sum`, `correct_sum`, `weight_sum`, see `losses`); this one is pretraining's
and seq2seq fine-tuning's (with label smoothing).
"""

import functools

import jax.numpy as jnp
import ml_collections

from glm_jax.model.glm import GLM, GLMConfig, output_logits
from glm_jax.training import losses


def contract_sums(
    config: GLMConfig,
    params,
    batch,
    *,
    deterministic: bool = True,
    rng=None,
    label_smoothing: float = 0.0,
    capacity: int = 0,
    logits_chunk: int = 0,
) -> dict:
    """The pretraining objective (and seq2seq fine-tuning's, with label smoothing): Part B
    cross-entropy sums of a batch of contract fields.

    `capacity` C > 0 (static; `Trainer` sets it from `train.scored_capacity`): logits only at each
    row's scored positions, gathered in order into C slots (`losses.scored_positions`), the sums
    the same as over all positions. A row with more than C scored positions gives a NaN loss (the
    step is then not applied, see `train.on_nonfinite`), never a silent drop; `Trainer.device_batch`
    stops such a batch on the host first with a `ScoredCapacityError`. 0: logits at all L positions.
    `logits_chunk` > 0 (`train.logits_chunk`): where more positions than that are scored, their
    logits are computed that many at a time (`losses.chunked_scored_sums`), never all at once.
    """
    rngs = {} if rng is None else {"dropout": rng}
    apply = functools.partial(GLM(config).apply, {"params": params}, batch, deterministic=deterministic, rngs=rngs)
    gather = 0 < capacity < batch["loss_weights"].shape[1]
    if gather:
        positions, valid, count = losses.scored_positions(batch["loss_weights"], capacity)
        apply = functools.partial(apply, scored_positions=positions)
        batch = losses.gather_scored(batch, positions, valid)
    if 0 < logits_chunk < batch["loss_weights"].shape[1]:
        logits_of = functools.partial(output_logits, config, params)
        sums = losses.chunked_scored_sums(apply(return_hidden=True), batch, logits_of, logits_chunk, label_smoothing)
    else:
        sums = losses.scored_sums(apply(), batch, label_smoothing)
    if gather:
        sums["loss_sum"] = jnp.where(jnp.any(count > capacity), jnp.nan, sums["loss_sum"])
    return sums


class ScoredCapacityError(ValueError):
    """A batch row holds more scored (Part B) positions than `train.scored_capacity` gives it."""


def scored_capacity(c: ml_collections.ConfigDict, max_scored: int) -> int:
    """Slots per row for the scored positions of config `c` (`train.scored_capacity`), a multiple
    of 8 below data.seq_len, or 0: logits at every position.

    -1 (auto): `max_scored` rounded up, the most scored positions a row of the run's data can hold
    (the data side derives it from a task's objective, `glm_jax.data.tasks.max_scored`; data.seq_len
    where nothing tighter is known), so a batch never exceeds it; 0: no gather; > 0: that many
    slots, rounded up.
    """
    wanted = c.train.scored_capacity
    if wanted == 0:
        return 0
    return losses.round_capacity(max_scored if wanted < 0 else wanted, c.data.seq_len)


def is_contract_objective(objective) -> bool:
    """`contract_sums`, or a `functools.partial` of it (seq2seq fine-tuning's label smoothing)."""
    return objective is contract_sums or (isinstance(objective, functools.partial) and objective.func is contract_sums)
