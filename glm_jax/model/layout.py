"""2D positions and the attention mask, derived inside jit from the data contract (DESIGN.md).

The one function every path (training, evaluation, decoding) uses. For the worked example

    inputs     [CLS] x1 x2 [M] x4 [M] [eos] sop x5 x6 sop x3
    span_ids    0    0  0   0  0   0   0    2   2  2  1   1

it gives positions 0 1 2 3 4 5 6 5 5 5 3 3 and block positions 0 0 0 0 0 0 0 1 2 3 1 2.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Layout(NamedTuple):
    positions: jax.Array  # [B, L] int32
    block_positions: jax.Array  # [B, L] int32
    mask: jax.Array  # [B, 1, L, L] bool: mask[b, 0, q, k] is True where q may attend to k


def _run_start(is_start: jax.Array) -> jax.Array:
    """Index of the most recent True at or before each position (0 if none), along the last axis."""
    index = jnp.arange(is_start.shape[-1], dtype=jnp.int32)
    return jax.lax.cummax(jnp.where(is_start, index, 0), axis=is_start.ndim - 1)


def layout(batch, blank_markers) -> Layout:
    """Positions, block positions and mask of a batch of contract fields.

    Args:
      batch: dict with at least `inputs`, `segment_ids`, `span_ids`, each `[B, L]` int32.
      blank_markers: ids of the tokens that open a blank in Part A ([MASK], [sMASK], [gMASK]).
    """
    tokens, segments, spans = batch["inputs"], batch["segment_ids"], batch["span_ids"]
    length = tokens.shape[-1]
    index = jnp.arange(length, dtype=jnp.int32)
    previous = lambda x: jnp.pad(x[:, :-1], ((0, 0), (1, 0)), constant_values=-1)  # noqa: E731

    real = segments > 0
    part_a = real & (spans == 0)
    part_b = real & (spans > 0)
    example_start = _run_start(segments != previous(segments))
    offset = index - example_start

    # Rank (1, 2, ...) of each blank marker among the markers of its example's Part A.
    is_marker = part_a & jnp.isin(tokens, jnp.asarray(blank_markers, jnp.int32))
    rank = jnp.cumsum(is_marker, axis=-1, dtype=jnp.int32)
    rank = rank - jnp.take_along_axis(rank - is_marker, example_start, axis=-1)
    # A Part B token sits at the offset of the marker of its blank: same example, rank == span id.
    fills = (
        is_marker[:, None, :] & (segments[:, :, None] == segments[:, None, :]) & (rank[:, None, :] == spans[:, :, None])
    )
    marker_offset = jnp.max(jnp.where(fills, offset[:, None, :], 0), axis=-1)
    positions = jnp.where(part_b, marker_offset, jnp.where(part_a, offset, 0))

    span_start = part_b & ((spans != previous(spans)) | (segments != previous(segments)))
    block_positions = jnp.where(part_b, index - _run_start(span_start) + 1, 0)

    same_example = real[:, :, None] & (segments[:, :, None] == segments[:, None, :])
    visible = part_a[:, None, :] | (index[None, None, :] <= index[None, :, None])
    return Layout(positions, block_positions, (same_example & visible)[:, None])
