"""Part B cross-entropy and accuracy, as sums so that they add up over batches and devices.

Only Part B is scored (`loss_weights > 0`, ~15-25% of a short-span pretraining row), so the train
and eval steps compute logits only there: each row's scored positions are gathered, in order, into
a static number of slots C (`scored_positions`), and the model's final LayerNorm and tied output
projection run on those `[B, C]` positions instead of all `[B, L]`. C is an upper bound on the
scored positions of a row, derived on the data side from the pretraining objective
(`glm_jax.data.span_lengths.short_spans_max_scored`), or L (no gather) where nothing tighter is known.
"""

import math

import jax
import jax.numpy as jnp
import optax

SLOT_MULTIPLE = 8  # capacities are rounded up to a multiple of this (TPU sublanes)


def smoothed_cross_entropy(logits, targets, label_smoothing: float):
    """Cross-entropy against targets smoothed over the vocabulary, `(1 - e) * onehot + e / V`:
    `(1 - e) * nll(target) + e * mean over the vocabulary of nll`, without a one-hot array."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    if not label_smoothing:
        return ce
    uniform = -jnp.mean(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)
    return (1.0 - label_smoothing) * ce + label_smoothing * uniform


def scored_sums(logits, batch, label_smoothing: float = 0.0) -> dict:
    """Sums over scored positions: cross-entropy (label-smoothed if asked), correct top-1, and the weight.

    `logits` `[..., V]` and `batch`'s `targets` and `loss_weights` `[...]` share their leading axes:
    all positions `[B, L]`, or the gathered ones `[B, C]` (`gather_scored`).
    """
    weights = batch["loss_weights"].astype(jnp.float32)
    ce = smoothed_cross_entropy(logits, batch["targets"], label_smoothing)
    # Correct: the target's logit is the largest. A max and a gather, not an argmax (a variadic
    # reduce over the vocabulary, ~10% of a small model's CPU step); differs only on exact ties.
    target_logit = jnp.take_along_axis(logits, batch["targets"][..., None], axis=-1)[..., 0]
    correct = (target_logit >= jnp.max(logits, axis=-1)).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(ce * weights),
        "correct_sum": jnp.sum(correct * weights),
        "weight_sum": jnp.sum(weights),
    }


def chunked_scored_sums(hidden, batch, logits_of, chunk: int, label_smoothing: float = 0.0) -> dict:
    """`scored_sums` of `logits_of(hidden)`, `chunk` positions at a time: a scan whose steps are
    rematerialized, so that only one chunk's `[B, chunk, V]` logits exist at once, in the forward
    and the backward pass. `hidden` `[B, P, H]`; `batch`'s `targets` and `loss_weights` `[B, P]`."""
    rows, length = hidden.shape[:2]
    n = -(-length // chunk)

    def split(x):  # [B, P, ...] -> [n, B, chunk, ...], padded with zero weights
        x = jnp.pad(x, [(0, 0), (0, n * chunk - length)] + [(0, 0)] * (x.ndim - 2))
        return jnp.moveaxis(x.reshape(rows, n, chunk, *x.shape[2:]), 1, 0)

    @jax.checkpoint
    def add_chunk(total, part):
        h, targets, weights = part
        sums = scored_sums(logits_of(h), {"targets": targets, "loss_weights": weights}, label_smoothing)
        return jax.tree.map(jnp.add, total, sums), None

    zero = jnp.zeros((), jnp.float32)
    parts = (split(hidden), split(batch["targets"]), split(batch["loss_weights"]))
    sums, _ = jax.lax.scan(add_chunk, {"loss_sum": zero, "correct_sum": zero, "weight_sum": zero}, parts)
    return sums


def scored_count(sums: dict):
    """The number of Part B targets that sums are divided by (the official loss normalization), at least 1."""
    return jnp.maximum(sums["weight_sum"], 1.0)


# ---------------------------------------------------------------------------------------------
# Logits only where scored.


def scored_positions(loss_weights, capacity: int):
    """Each row's scored positions (`loss_weights > 0`) in increasing order, in `capacity` slots.

    Returns `positions` `[B, C]` int32 (slots past a row's count point at position 0), `valid`
    `[B, C]` bool (the slot holds a scored position) and `count` `[B]` int32 (scored positions per
    row; a row with more than C loses the rest, which `contract_sums` turns into a NaN loss).
    O(L) per row: a running count ranks the scored positions, and each is scattered to its rank.
    Example, C = 4: weights `[0 0 1 1 0 1]` → positions `[2 3 5 0]`, valid `[T T T F]`, count 3.
    """
    scored = loss_weights > 0
    rank = jnp.cumsum(scored, axis=-1, dtype=jnp.int32) - 1
    count = rank[:, -1] + 1
    slot = jnp.where(scored, rank, capacity)  # unscored positions go out of range and are dropped
    where = jnp.arange(loss_weights.shape[-1], dtype=jnp.int32)

    def row(slots):
        return jnp.zeros((capacity,), jnp.int32).at[slots].set(where, mode="drop", unique_indices=True)

    positions = jax.vmap(row)(slot)
    valid = jnp.arange(capacity, dtype=jnp.int32)[None, :] < count[:, None]
    return positions, valid, count


def gather_scored(batch, positions, valid) -> dict:
    """`targets` and `loss_weights` at `positions` `[B, C]` (weight 0 in the empty slots)."""
    take = lambda x: jnp.take_along_axis(x, positions, axis=1)  # noqa: E731
    weights = take(batch["loss_weights"])
    return {"targets": take(batch["targets"]), "loss_weights": jnp.where(valid, weights, jnp.zeros_like(weights))}


def round_capacity(scored: int, seq_len: int) -> int:
    """`scored` slots rounded up to a multiple of `SLOT_MULTIPLE`; 0 (all positions, no gather) when
    that is not below `seq_len`."""
    capacity = math.ceil(max(scored, 1) / SLOT_MULTIPLE) * SLOT_MULTIPLE
    return capacity if capacity < seq_len else 0
