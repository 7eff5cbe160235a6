"""Scores of cloze answers: Part A once, every answer continued from its KV cache, side by side.

A batch of questions (`cloze.DEVICE_FIELDS`) holds P Part A layouts `[B, P, A]` (usually P = 1;
answers that need other cuts of the passage have their own, see `cloze`) and answers `[B, C, T]`,
each with its layout (`choice_part_a`). Each layout runs once into the cache (`decoding.prefill`,
the B * P layouts as rows of their own); then all C answers run in one call, each as a Part B span
`sop t1 .. t(n-1)` at its blank's position with block positions 1..T, under a mask that lets an
answer token see its own layout of Part A and the earlier tokens of its own answer only. This is
exactly the full forward of each answer's own contract row (`contract_rows`), computed with Part A
shared; tests check the two agree.
"""

import jax
import jax.numpy as jnp

from glm_jax.downstream.decoding import init_cache, prefill_step
from glm_jax.model.glm import GLM, GLMConfig

# finetune.loss: the official --loss-func choices (finetune_glm.py, finetune_forward_step), over a question's
# answer scores; "ce" is its "cross_entropy" (both names are accepted). See `score_sums`.
LOSSES = ("ce", "cross_entropy", "hinge", "generative", "mix")


def blank_offsets(inputs, blank_markers) -> jax.Array:
    """`[B]` offset of each row's first blank marker (its position in Part A)."""
    is_marker = jnp.isin(inputs, jnp.asarray(blank_markers, jnp.int32))
    return jnp.argmax(is_marker, axis=-1).astype(jnp.int32)


def answer_inputs(choice_ids, sop: int):
    """Part B inputs of each answer: `sop`, then its targets but the last (`[B, C, T]`)."""
    return jnp.concatenate([jnp.full_like(choice_ids[..., :1], sop), choice_ids[..., :-1]], axis=-1)


def _token_log_probs(logits, targets):
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def choice_log_probs(config: GLMConfig, params, batch, sop: int, *, deterministic=True, rng=None):
    """`[B, C]` summed log-probabilities of each answer's targets (0 for padded answers).

    With `deterministic=False`, dropout draws from `rng` (training).
    """
    inputs, segments, choices = batch["inputs"], batch["segment_ids"], batch["choice_ids"]
    b, p, a = inputs.shape
    c, t = choices.shape[1:]
    rngs = {} if deterministic else dict(zip(("prefill", "answers"), jax.random.split(rng), strict=True))
    apply = lambda step, cache, key: GLM(config).apply(  # noqa: E731
        {"params": params}, step, deterministic=deterministic, cache=cache, rngs={"dropout": rngs[key]} if rngs else {}
    )
    # Each layout into a cache of its own a slots; then a question's p layouts side by side in one
    # row (layout l at slots l*a ..), followed by c*t slots for the answers.
    step, _ = prefill_step(config, inputs.reshape(b * p, a), segments.reshape(b * p, a), a)
    _, cache = apply(step, init_cache(config, b * p, a), "prefill")
    answer_slots = ((0, 0), (0, 0), (0, c * t), (0, 0), (0, 0))
    cache = tuple(jnp.pad(x.reshape(x.shape[0], b, p * a, *x.shape[3:]), answer_slots) for x in cache)
    # Answer j's token i sits at slot p*a + j*t + i; it sees its layout's Part A and slots p*a + j*t .. itself.
    slot = jnp.arange(p * a + c * t)
    query = p * a + jnp.arange(c * t)
    own = (slot[None, :] >= p * a + (jnp.arange(c * t) // t * t)[:, None]) & (slot[None, :] <= query[:, None])
    valid = jnp.pad(segments.reshape(b, p * a) > 0, ((0, 0), (0, c * t)))
    query_layout = jnp.repeat(batch["choice_part_a"], t, axis=1)  # [B, c*t]
    sees_part_a = valid[:, None, :] & (slot < p * a)[None, None, :] & (slot // a == query_layout[:, :, None])
    offsets = blank_offsets(inputs.reshape(b * p, a), config.blank_markers).reshape(b, p)
    positions, block_positions = config.scheme.part_b(
        jnp.take_along_axis(offsets, query_layout, axis=1), jnp.tile(jnp.arange(t), c)[None]
    )
    step = {
        "inputs": answer_inputs(choices, sop).reshape(b, c * t),
        "positions": positions,
        "block_positions": block_positions,
        "mask": (sees_part_a | own[None])[:, None],
        "index": p * a,
    }
    logits, _ = apply(step, cache, "answers")
    scored = jnp.arange(t)[None, None, :] < batch["choice_lengths"][..., None]
    per_token = _token_log_probs(logits.reshape(b, c, t, -1), choices)
    return jnp.sum(jnp.where(scored, per_token, 0.0), axis=-1)


def contract_rows(batch, sop: int) -> dict:
    """Each answer as its own row of the data contract, `[B * C, A + T]`: its layout of Part A, then
    `sop` + the answer's tokens, targets the answer's targets: the row the official code builds for
    that answer. The reference that `choice_log_probs` equals."""
    choices, lengths = batch["choice_ids"], batch["choice_lengths"]
    b, _, a = batch["inputs"].shape
    c, t = choices.shape[1:]
    own = lambda x: jnp.take_along_axis(x, batch["choice_part_a"][:, :, None], axis=1).reshape(b * c, a)  # noqa: E731
    inputs, segments = own(batch["inputs"]), own(batch["segment_ids"])
    # Move each row's Part A padding after its answer: the answer must follow Part A directly.
    start = jnp.sum(segments > 0, axis=-1)[:, None]
    scored = jnp.arange(t)[None, None, :] < lengths[..., None]
    fields = {
        "inputs": (inputs, answer_inputs(choices, sop)),
        "targets": (jnp.zeros_like(inputs), choices),
        "loss_weights": (jnp.zeros_like(inputs), scored.astype(jnp.int32)),
        "segment_ids": (segments, jnp.ones_like(choices)),
        "span_ids": (jnp.zeros_like(inputs), jnp.ones_like(choices)),
    }
    rows = {}
    index = jnp.arange(a + t)[None]
    from_b = (index >= start) & (index < start + t)
    for name, (row_a, part_b) in fields.items():
        gathered_b = jnp.take_along_axis(part_b.reshape(b * c, t), jnp.clip(index - start, 0, t - 1), axis=1)
        padded_a = jnp.pad(row_a, ((0, 0), (0, t)))
        rows[name] = jnp.where(from_b, gathered_b, jnp.where(index < start, padded_a, 0))
    return rows


def full_forward_log_probs(config: GLMConfig, params, batch, sop: int):
    """`[B, C]` scores of `choice_log_probs` by one full forward per answer row (slow reference)."""
    rows = contract_rows(batch, sop)
    logits = GLM(config).apply({"params": params}, rows)
    per_token = _token_log_probs(logits, rows["targets"]) * rows["loss_weights"]
    b, c = batch["choice_lengths"].shape
    return jnp.sum(per_token, axis=-1).reshape(b, c)


def choice_scores(log_probs, lengths, length_penalty: float):
    """Log-prob / length ** penalty (penalty 0: the plain sum); padded answers get -inf."""
    norm = jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty
    return jnp.where(lengths > 0, log_probs / norm, -jnp.inf)


def question_sums(log_probs, batch, *, length_penalty: float = 0.0, loss: str = "ce") -> dict:
    """`score_sums` of a batch of cloze questions: each answer scored by `choice_scores` (its summed
    log-probability / length ** penalty, as the official `GLMForMultiTokenCloze`)."""
    lengths = batch["choice_lengths"]
    return score_sums(choice_scores(log_probs, lengths, length_penalty), lengths > 0, batch["label"], loss=loss)


def score_sums(scores, valid, label, *, loss: str = "ce") -> dict:
    """Summed loss, correct predictions and scored questions of `[B, C]` answer scores (`valid`: the real
    answers; `label`: the gold one's index, -1 unknown), the loss per question as the official `--loss-func`:

        ce, cross_entropy   logsumexp(s) - s[gold]
        hinge               sum over the other answers j of max(0, 1 + s[j] - s[gold])  (margin 1)
        generative          -s[gold]
        mix                 generative + ce

    E.g. s = (-1, -3), gold 0: ce 0.127, hinge 0, generative 1, mix 1.127. The official code averages these
    over the batch (its hinge sums over every answer, the gold's own term 1, and subtracts 1 after the
    mean: the same). Padded answers count as the official masked ones (score -10000 there, never chosen,
    no hinge term). Questions without a gold label or without answers score nothing and never give NaN.
    """
    counted = (label >= 0) & jnp.any(valid, axis=-1)
    gold = jnp.clip(label, 0, scores.shape[1] - 1)
    safe = jnp.where(valid & jnp.isfinite(scores), scores, -1e30)
    gold_score = jnp.take_along_axis(safe, gold[:, None], axis=1)[:, 0]
    cross_entropy = jax.nn.logsumexp(safe, axis=-1) - gold_score
    others = jnp.arange(scores.shape[1])[None, :] != gold[:, None]
    per_question = {
        "ce": cross_entropy,
        "cross_entropy": cross_entropy,
        "hinge": jnp.sum(jnp.where(others, jax.nn.relu(1.0 + safe - gold_score[:, None]), 0.0), axis=-1),
        "generative": -gold_score,
        "mix": cross_entropy - gold_score,
    }[loss]
    correct = (jnp.argmax(safe, axis=-1) == label) & counted
    return {
        "loss_sum": jnp.sum(jnp.where(counted, per_question, 0.0)),
        "correct_sum": jnp.sum(correct.astype(jnp.float32)),
        "weight_sum": jnp.sum(counted.astype(jnp.float32)),
    }
