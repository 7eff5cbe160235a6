"""Cloze answers scored in place of the blank: by a masked LM (BERT, PET: `finetune.cloze_style =
masked_lm`) or by a left-to-right LM (GPT: `left_to_right`).

Each answer gets its own row: its layout of Part A with the blank replaced by the answer's tokens (a
candidate's eop dropped; a verbalizer is one token), the whole row Part A. For Part A `[CLS] a [M] b`
and the answers `x` and `y z`:

    masked_lm       answer 0  [CLS] a [M] b         targets at offsets 2: x
                    answer 1  [CLS] a [M] [M] b     targets at offsets 2, 3: y z
    left_to_right   answer 0  [CLS] a x b           x b scored, each from the tokens before it
                    answer 1  [CLS] a y z b         y z b scored

A masked LM sees the whole row and predicts all of an answer's tokens at once at its masks: how the
paper's "BERT (cloze)" baseline is fine-tuned. A left-to-right model sees only what precedes each
token, so an answer is scored with the rest of the row after it, which it conditions (the usual way
to score a language model's choices); [CLS] stays, as the token every answer can be predicted from. A
GLM model scores answers from its blank instead (`scoring`).
"""

import jax.numpy as jnp

from glm_jax.downstream.cloze.scoring import _token_log_probs, blank_offsets
from glm_jax.model.glm import GLM, GLMConfig


def in_place_rows(batch, mask: int, eop: int, *, masks: bool) -> dict:
    """Each answer's row `[B * C, A + T]` (`inputs`, `segment_ids`, `span_ids`) with the answer's
    tokens (or, with `masks`, one [MASK] per token) in place of the blank; `blank` `[B * C, 1]` its
    offset and `count` `[B * C, 1]` the answer's tokens without its eop."""
    inputs, segments, choices = batch["inputs"], batch["segment_ids"], batch["choice_ids"]
    b, _, a = inputs.shape
    c, t = choices.shape[1:]
    own = lambda x: jnp.take_along_axis(x, batch["choice_part_a"][:, :, None], axis=1).reshape(b * c, a)  # noqa: E731
    inputs, segments, choices = own(inputs), own(segments), choices.reshape(b * c, t)
    blank = blank_offsets(inputs, (mask,))[:, None]
    lengths = batch["choice_lengths"].reshape(b * c, 1)
    last = jnp.take_along_axis(choices, jnp.maximum(lengths - 1, 0), axis=1)
    count = lengths - ((lengths > 0) & (last == eop))
    index = jnp.arange(a + t)[None]
    in_blank = (index >= blank) & (index < blank + count)
    # A token after the blank moves right by count - 1 (the blank's own slot holds the first answer token).
    source = jnp.clip(jnp.where(index < blank, index, index - count + 1), 0, a - 1)
    moved = lambda x: jnp.where(index - count + 1 < a, jnp.take_along_axis(x, source, axis=1), 0)  # noqa: E731
    answer = mask if masks else jnp.take_along_axis(choices, jnp.clip(index - blank, 0, t - 1), axis=1)
    row_inputs = jnp.where(in_blank, answer, moved(inputs))
    row_segments = jnp.where(in_blank, 1, moved(segments))
    rows = {"inputs": row_inputs, "segment_ids": row_segments, "span_ids": jnp.zeros_like(row_inputs)}
    return rows, blank, count


def masked_rows(batch, mask: int, eop: int) -> dict:
    """The masked-LM rows (`in_place_rows` with masks), and where the masks are: `positions`
    `[B * C, T]` (offsets of the masks, clipped into the row), their `targets` and `weights` (1 for a
    real answer token, 0 for its eop and padding)."""
    rows, blank, count = in_place_rows(batch, mask, eop, masks=True)
    t = batch["choice_ids"].shape[-1]
    steps = jnp.arange(t)[None]
    return {
        **rows,
        "positions": jnp.minimum(blank + steps, rows["inputs"].shape[1] - 1),
        "targets": batch["choice_ids"].reshape(-1, t),
        "weights": (steps < count).astype(jnp.float32),
    }


def left_to_right_rows(batch, mask: int, eop: int) -> dict:
    """The left-to-right rows (`in_place_rows` with the answers' tokens), `targets` (each row's next
    tokens) and `weights` (1 where the target is the answer's first token or any real token after it)."""
    rows, blank, _ = in_place_rows(batch, mask, eop, masks=False)
    index = jnp.arange(rows["inputs"].shape[1])[None]
    targets = jnp.pad(rows["inputs"][:, 1:], ((0, 0), (0, 1)))
    real_next = jnp.pad(rows["segment_ids"][:, 1:] > 0, ((0, 0), (0, 1)))
    return {**rows, "targets": targets, "weights": ((index + 1 >= blank) & real_next).astype(jnp.float32)}


def _apply(config, params, rows, *, deterministic, rng, scored_positions=None):
    model_batch = {k: rows[k] for k in ("inputs", "segment_ids", "span_ids")}
    rngs = {} if deterministic else {"dropout": rng}
    return GLM(config).apply(
        {"params": params}, model_batch, deterministic=deterministic, rngs=rngs, scored_positions=scored_positions
    )


def masked_log_probs(config: GLMConfig, params, batch, mask: int, eop: int, *, deterministic=True, rng=None):
    """`[B, C]` summed log-probabilities of each answer's tokens at its masks (0 for padded answers)."""
    rows = masked_rows(batch, mask, eop)
    logits = _apply(config, params, rows, deterministic=deterministic, rng=rng, scored_positions=rows["positions"])
    per_token = _token_log_probs(logits, rows["targets"]) * rows["weights"]
    return jnp.sum(per_token, axis=-1).reshape(batch["choice_lengths"].shape)


def left_to_right_log_probs(config: GLMConfig, params, batch, mask: int, eop: int, *, deterministic=True, rng=None):
    """`[B, C]` summed log-probabilities of each answer's tokens and of the rest of its row after them,
    each token predicted from those before it (0 for padded answers)."""
    rows = left_to_right_rows(batch, mask, eop)
    logits = _apply(config, params, rows, deterministic=deterministic, rng=rng)
    per_token = _token_log_probs(logits, rows["targets"]) * rows["weights"]
    sums = jnp.sum(per_token, axis=-1).reshape(batch["choice_lengths"].shape)
    return jnp.where(batch["choice_lengths"] > 0, sums, 0.0)
