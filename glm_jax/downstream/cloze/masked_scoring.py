"""Cloze answers scored as a masked LM scores them (BERT, PET): `finetune.cloze_style = masked_lm`.

Each answer gets its own row: its layout of Part A with the blank replaced by one [MASK] per answer
token (a candidate's eop dropped; a verbalizer is one token), the whole row Part A, so every token
sees all of it; the answer's score is the sum of its tokens' log-probabilities at their masks, all
predicted at once. For Part A
`[CLS] a [M] b` and the answers `x` and `y z`:

    answer 0   [CLS] a [M] b            targets at offset 2: x
    answer 1   [CLS] a [M] [M] b        targets at offsets 2, 3: y z

This is how the paper's "BERT (cloze)" baseline is fine-tuned (a masked-LM model, several masks for
multi-token answers); a GLM model scores answers from its blank instead (`scoring`).
"""

import jax.numpy as jnp

from glm_jax.downstream.cloze.scoring import _token_log_probs, blank_offsets
from glm_jax.model.glm import GLM, GLMConfig


def masked_rows(batch, mask: int, eop: int) -> dict:
    """Each answer's row `[B * C, A + T]` (`inputs`, `segment_ids`, `span_ids`), and where its masks
    are: `positions` `[B * C, T]` (offsets of the masks, clipped into the row), their `targets` and
    `weights` (1 for a real answer token, 0 for its eop and padding)."""
    inputs, segments, choices = batch["inputs"], batch["segment_ids"], batch["choice_ids"]
    b, _, a = inputs.shape
    c, t = choices.shape[1:]
    own = lambda x: jnp.take_along_axis(x, batch["choice_part_a"][:, :, None], axis=1).reshape(b * c, a)  # noqa: E731
    inputs, segments = own(inputs), own(segments)
    blank = blank_offsets(inputs, (mask,))[:, None]
    lengths = batch["choice_lengths"].reshape(b * c, 1)
    last = jnp.take_along_axis(choices.reshape(b * c, t), jnp.maximum(lengths - 1, 0), axis=1)
    count = lengths - ((lengths > 0) & (last == eop))  # the answer's tokens, without its eop
    index = jnp.arange(a + t)[None]
    in_blank = (index >= blank) & (index < blank + count)
    # A token after the blank moves right by count - 1 (the blank's own [MASK] is the first mask).
    source = jnp.clip(jnp.where(index < blank, index, index - count + 1), 0, a - 1)
    moved = lambda x: jnp.where(index - count + 1 < a, jnp.take_along_axis(x, source, axis=1), 0)  # noqa: E731
    row_inputs = jnp.where(in_blank, mask, moved(inputs))
    row_segments = jnp.where(in_blank, 1, moved(segments))
    steps = jnp.arange(t)[None]
    return {
        "inputs": row_inputs,
        "segment_ids": row_segments,
        "span_ids": jnp.zeros_like(row_inputs),
        "positions": jnp.minimum(blank + steps, a + t - 1),
        "targets": choices.reshape(b * c, t),
        "weights": (steps < count).astype(jnp.float32),
    }


def masked_log_probs(config: GLMConfig, params, batch, mask: int, eop: int, *, deterministic=True, rng=None):
    """`[B, C]` summed log-probabilities of each answer's tokens at its masks (0 for padded answers)."""
    rows = masked_rows(batch, mask, eop)
    model_batch = {k: rows[k] for k in ("inputs", "segment_ids", "span_ids")}
    rngs = {} if deterministic else {"dropout": rng}
    logits = GLM(config).apply(
        {"params": params}, model_batch, deterministic=deterministic, rngs=rngs, scored_positions=rows["positions"]
    )
    per_token = _token_log_probs(logits, rows["targets"]) * rows["weights"]
    return jnp.sum(per_token, axis=-1).reshape(batch["choice_lengths"].shape)
