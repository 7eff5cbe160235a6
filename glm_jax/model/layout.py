"""2D positions and the attention mask, derived inside jit from the data contract (`glm_jax/contract.py`, docs/data.md).

The one function every path (training, evaluation, decoding) uses. For the worked example

    inputs     [CLS] x1 x2 [M] x4 [M] [eos] sop x5 x6 sop x3
    span_ids    0    0  0   0  0   0   0    2   2  2  1   1

it gives positions 0 1 2 3 4 5 6 5 5 5 3 3 and block positions 0 0 0 0 0 0 0 1 2 3 1 2. The
variants of the paper's comparisons (`Scheme`) change only Part B's numbers, or the mask:

    no block position (block "constant")      positions as above,  block positions ... 1 1 1 1 1
    sentinel tokens (sentinel_position = 12)  positions ... 12 12 12 12 12, block positions as above
    a masked LM (BERT): all of a row Part A   positions 0 1 2 ..., each token sees the whole row
    causal (GPT)                              positions 0 1 2 ..., each token sees itself and before

Everything here is O(L) per row: the mask is carried as `segment_ids` and `last_visible`
(query q sees key k iff both are in q's example and k <= last_visible[q]: the end of Part A for
a Part A query, q itself for a Part B query). `dense_mask` expands it to `[B, 1, L, L]` for the
XLA attention and decoding; the splash kernel reads the two `[B, L]` arrays directly, the GPU
kernels their `key_ranges`.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

# Block positions of Part B: "span" 1, 2, ... inside each span (GLM); "constant" 1 throughout (the
# official --no-block-position); "none" 0 everywhere, for models without the table (BERT, GPT).
BLOCK_POSITIONS = ("span", "constant", "none")


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How positions are numbered and who attends to whom: GLM's own scheme (the defaults), or a
    variant of the paper's comparisons (its ablations, the BERT and GPT baselines).

    `sentinel_position` >= 0: every Part B token sits at that position (the official
    --sentinel-token: `max_len`), each blank being told apart by its own [MASK{i}] / sop{i} tokens.
    `causal`: every token sees the tokens before it in its example and itself, and positions count
    from the example's start (a left-to-right LM, GPT). `max_position`: the bound of random start
    positions (`layout`'s `position_noise`).
    """

    block: str = "span"  # one of BLOCK_POSITIONS
    sentinel_position: int = -1
    causal: bool = False
    max_position: int = 0

    def __post_init__(self):
        if self.block not in BLOCK_POSITIONS:
            raise ValueError(f"block positions {self.block!r} are not one of {BLOCK_POSITIONS}.")

    def part_b(self, marker_offset: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Position and block position of Part B token `step` (0 for the span's sop) of the blank at
        `marker_offset` (broadcast together). A causal model has no blanks: its Part B continues the
        prompt whose last token is at `marker_offset`, numbered on as `layout` numbers its rows."""
        marker_offset, step = jnp.broadcast_arrays(marker_offset, step)
        if self.causal:  # a left-to-right model continues its prompt; `marker_offset` is then its last offset
            return marker_offset + 1 + step, jnp.zeros_like(step)
        position = marker_offset if self.sentinel_position < 0 else jnp.full_like(marker_offset, self.sentinel_position)
        block = {"span": step + 1, "constant": jnp.ones_like(step), "none": jnp.zeros_like(step)}[self.block]
        return position, block


GLM_SCHEME = Scheme()


class Layout(NamedTuple):
    positions: jax.Array  # [B, L] int32
    block_positions: jax.Array  # [B, L] int32
    segment_ids: jax.Array  # [B, L] int32, 0 for padding
    last_visible: jax.Array  # [B, L] int32: the last key index q may attend to (within its example)


def _run_start(is_start: jax.Array) -> jax.Array:
    """Index of the most recent True at or before each position (0 if none), along the last axis."""
    index = jnp.arange(is_start.shape[-1], dtype=jnp.int32)
    return jax.lax.cummax(jnp.where(is_start, index, 0), axis=is_start.ndim - 1)


def _run_end(is_end: jax.Array) -> jax.Array:
    """Index of the nearest True at or after each position (L - 1 if none), along the last axis."""
    length = is_end.shape[-1]
    index = jnp.arange(length, dtype=jnp.int32)
    return jax.lax.cummin(jnp.where(is_end, index, length - 1), axis=is_end.ndim - 1, reverse=True)


def _shift(x: jax.Array, by: int, fill) -> jax.Array:
    """x moved `by` places along the last axis (right if positive), `fill` where nothing moved in."""
    pad = ((0, 0), (by, 0)) if by > 0 else ((0, 0), (0, -by))
    body = x[:, :-by] if by > 0 else x[:, -by:]
    return jnp.pad(body, pad, constant_values=fill)


def layout(batch, blank_markers, scheme: Scheme = GLM_SCHEME, position_noise=None) -> Layout:
    """Positions, block positions and the mask's two arrays of a batch of contract fields.

    Args:
      batch: dict with at least `inputs`, `segment_ids`, `span_ids`, each `[B, L]` int32.
      blank_markers: ids of the tokens that open a blank in Part A ([MASK], [sMASK], [gMASK]).
      scheme: GLM's, or a variant's (`Scheme`).
      position_noise: None, or `[B, L]` uniform floats in [0, 1): each example's positions then
        start at a random offset, U{0 .. max_position - 1 - its last Part A position} drawn from
        the noise at its first index (the official --random-position; sentinel positions stay).
    """
    tokens, segments, spans = batch["inputs"], batch["segment_ids"], batch["span_ids"]
    index = jnp.arange(tokens.shape[-1], dtype=jnp.int32)
    real = segments > 0
    part_a = real & (spans == 0)
    part_b = real & (spans > 0)
    example_start = _run_start(segments != _shift(segments, 1, -1))
    offset = index - example_start

    # A Part B token of span s sits at the offset of its example's s-th blank marker. Number the
    # markers of the row 1, 2, ... (`count`, inclusive); that marker is number `before + s`, where
    # `before` counts the row's markers ahead of the example, and its index is found by binary search.
    is_marker = part_a & jnp.isin(tokens, jnp.asarray(blank_markers, jnp.int32))
    count = jnp.cumsum(is_marker, axis=-1, dtype=jnp.int32)
    before = jnp.take_along_axis(count - is_marker, example_start, axis=-1)
    wanted = before + spans
    marker = jax.vmap(lambda c, w: jnp.searchsorted(c, w, side="left"))(count, wanted)
    marker = jnp.minimum(marker, index[-1]).astype(jnp.int32)
    found = part_b & (jnp.take_along_axis(count, marker, axis=-1) == wanted)
    found &= jnp.take_along_axis(segments, marker, axis=-1) == segments
    marker_offset = jnp.where(found, jnp.take_along_axis(offset, marker, axis=-1), 0)

    # Part A precedes Part B in each example, so a Part A query sees up to its Part A's last token.
    part_a_end = part_a & ~(_shift(part_a, -1, False) & (_shift(segments, -1, -1) == segments))
    a_end = _run_end(part_a_end)
    last_visible = jnp.where(part_a & ~scheme.causal, a_end, index)
    if position_noise is not None:
        last_a = jnp.take_along_axis(a_end, example_start, axis=-1) - example_start
        room = jnp.maximum(scheme.max_position - last_a, 1)
        bias = jnp.floor(jnp.take_along_axis(position_noise, example_start, axis=-1) * room).astype(jnp.int32)
        offset, marker_offset = offset + bias, marker_offset + bias

    span_start = part_b & ((spans != _shift(spans, 1, -1)) | (segments != _shift(segments, 1, -1)))
    if scheme.causal:  # a left-to-right row: Part B, if any, numbered on as Part A
        b_positions, b_blocks = offset, jnp.zeros_like(offset)
    else:
        b_positions, b_blocks = scheme.part_b(marker_offset, index - _run_start(span_start))
    positions = jnp.where(part_b, b_positions, jnp.where(part_a, offset, 0))
    block_positions = jnp.where(part_b, b_blocks, 0)
    return Layout(positions, block_positions, segments, last_visible)


def dense_mask(segment_ids: jax.Array, last_visible: jax.Array) -> jax.Array:
    """`[B, 1, L, L]` bool, True where query q may attend to key k (padding queries see nothing)."""
    index = jnp.arange(segment_ids.shape[-1], dtype=jnp.int32)
    query_segment = segment_ids[:, :, None]
    same_example = (query_segment > 0) & (query_segment == segment_ids[:, None, :])
    return (same_example & (index[None, None, :] <= last_visible[:, :, None]))[:, None]


def key_ranges(segment_ids: jax.Array, last_visible: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The mask as one contiguous key range per query: q sees k iff `k_start[q] <= k < k_end[q]`, `[B, L]` int32.

    A real query's range runs from its example's first index to `last_visible[q]`; a padding query's
    covers its run of padding (never empty, never a real key), as the fused kernels need.
    """
    k_start = _run_start(segment_ids != _shift(segment_ids, 1, -1))
    run_end = _run_end(segment_ids != _shift(segment_ids, -1, -1))
    return k_start, jnp.where(segment_ids > 0, last_visible, run_end) + 1


def visible_pairs(segment_ids: jax.Array, last_visible: jax.Array) -> jax.Array:
    """The number of (query, key) pairs the mask lets attend, in O(L): the real density of attention."""
    k_start, k_end = key_ranges(segment_ids, last_visible)
    return jnp.sum(jnp.where(segment_ids > 0, k_end - k_start, 0), dtype=jnp.float32)
