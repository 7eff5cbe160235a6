"""The in-jit layout: positions, block positions and mask from the contract fields."""

import jax
import numpy as np

from glm_jax.model.layout import dense_mask, layout, visible_pairs

CLS, EOS, MASK, SMASK, GMASK, SOP = 3, 1, 5, 6, 7, 8
MARKERS = (MASK, SMASK, GMASK)
X1, X2, X3, X4, X5, X6 = 11, 12, 13, 14, 15, 16

# The data contract's worked example (docs/data.md), with two padding positions.
WORKED = {
    "inputs": [CLS, X1, X2, MASK, X4, MASK, EOS, SOP, X5, X6, SOP, X3, 0, 0],
    "segment_ids": [1] * 12 + [0, 0],
    "span_ids": [0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 1, 1, 0, 0],
}


def _layout(batch):
    arrays = {k: np.asarray([v], np.int32) for k, v in batch.items()}
    out = jax.jit(layout, static_argnums=1)(arrays, MARKERS)
    mask = dense_mask(out.segment_ids, out.last_visible)
    return np.asarray(out.positions[0]), np.asarray(out.block_positions[0]), np.asarray(mask[0, 0])


def _expected_mask(segments, spans):
    """Reference: q sees k iff same non-zero segment and (k in Part A or k <= q)."""
    length = len(segments)
    mask = np.zeros((length, length), bool)
    for q in range(length):
        for k in range(length):
            same = segments[q] == segments[k] != 0
            mask[q, k] = same and (spans[k] == 0 or k <= q)
    return mask


def test_worked_example():
    positions, block_positions, mask = _layout(WORKED)
    assert positions.tolist() == [0, 1, 2, 3, 4, 5, 6, 5, 5, 5, 3, 3, 0, 0]
    assert block_positions.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 1, 2, 0, 0]
    np.testing.assert_array_equal(mask, _expected_mask(WORKED["segment_ids"], WORKED["span_ids"]))
    # Spelled out: Part A sees Part A only; Part B sees Part A and itself causally; padding nothing.
    assert mask[:7, :7].all() and not mask[:7, 7:].any()
    assert mask[7:12, :7].all() and np.array_equal(mask[7:12, 7:12], np.tril(np.ones((5, 5), bool)))
    assert not mask[12:].any() and not mask[:, 12:].any()


def test_packed_examples_restart_positions_and_never_see_each_other():
    # Example 1: [CLS] a [M] b | sop c ; example 2: [CLS] [gM] [M] d | sop e | sop f g
    row = {
        "inputs": [CLS, 20, MASK, 21, SOP, 22, CLS, GMASK, MASK, 23, SOP, 24, SOP, 25, 26, 0],
        "segment_ids": [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0],
        "span_ids": [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 2, 2, 1, 1, 1, 0],
    }
    positions, block_positions, mask = _layout(row)
    assert positions.tolist() == [0, 1, 2, 3, 2, 2, 0, 1, 2, 3, 2, 2, 1, 1, 1, 0]
    assert block_positions.tolist() == [0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 2, 1, 2, 3, 0]
    np.testing.assert_array_equal(mask, _expected_mask(row["segment_ids"], row["span_ids"]))
    assert not mask[:6, 6:].any() and not mask[6:, :6].any()


def test_sentence_marker_positions():
    row = {"inputs": [CLS, SMASK, 30, SOP, 31, 32], "segment_ids": [1] * 6, "span_ids": [0, 0, 0, 1, 1, 1]}
    positions, block_positions, _ = _layout(row)
    assert positions.tolist() == [0, 1, 2, 1, 1, 1]
    assert block_positions.tolist() == [0, 0, 0, 1, 2, 3]


def test_visible_pairs_of_the_worked_example():
    """The attention term of the FLOP count uses the mask's real density: 7 x 7 in Part A, 8..12 in Part B."""
    _, _, mask = _layout(WORKED)
    assert mask.sum() == 7 * 7 + (8 + 9 + 10 + 11 + 12)
    assert float(visible_pairs(*_mask_arrays(WORKED))) == mask.sum()


def _mask_arrays(batch):
    arrays = {k: np.asarray([v], np.int32) for k, v in batch.items()}
    out = layout(arrays, MARKERS)
    return out.segment_ids, out.last_visible


def _random_row(rng, length):
    """Packed examples `[CLS] ... [M] ... | sop span | sop span ...` with spans in a random order, then padding."""
    inputs, segments, spans = [], [], []
    segment = 0
    while True:
        blanks = int(rng.integers(0, 4))
        filler = rng.integers(20, 40, size=int(rng.integers(1, 12)))
        part_a = [CLS, *filler]
        for _ in range(blanks):
            part_a.insert(int(rng.integers(1, len(part_a) + 1)), int(rng.choice(MARKERS)))
        part_b, span_ids = [], []
        for span in rng.permutation(blanks) + 1:
            size = int(rng.integers(1, 5))
            part_b += [SOP, *rng.integers(20, 40, size=size - 1)]
            span_ids += [int(span)] * size
        if len(inputs) + len(part_a) + len(part_b) > length:
            break
        segment += 1
        inputs += part_a + part_b
        segments += [segment] * (len(part_a) + len(part_b))
        spans += [0] * len(part_a) + span_ids
    pad = length - len(inputs)
    return {"inputs": inputs + [0] * pad, "segment_ids": segments + [0] * pad, "span_ids": spans + [0] * pad}


def _reference_positions(row):
    """Loops: a Part A token's offset in its example; a Part B token's marker's offset and its place in its span."""
    segments, spans, inputs = row["segment_ids"], row["span_ids"], row["inputs"]
    positions, block_positions = [0] * len(inputs), [0] * len(inputs)
    for t, segment in enumerate(segments):
        if not segment:
            continue
        start = segments.index(segment)
        if spans[t] == 0:
            positions[t] = t - start
            continue
        markers = [u for u in range(start, t) if segments[u] == segment and spans[u] == 0 and inputs[u] in MARKERS]
        positions[t] = markers[spans[t] - 1] - start
        first = t
        while first > start and spans[first - 1] == spans[t]:
            first -= 1
        block_positions[t] = t - first + 1
    return positions, block_positions


def test_random_packed_rows_match_the_quadratic_reference():
    rng = np.random.default_rng(0)
    for _ in range(40):
        row = _random_row(rng, 64)
        positions, block_positions, mask = _layout(row)
        expected_positions, expected_blocks = _reference_positions(row)
        assert positions.tolist() == expected_positions and block_positions.tolist() == expected_blocks
        np.testing.assert_array_equal(mask, _expected_mask(row["segment_ids"], row["span_ids"]))
        assert float(visible_pairs(*_mask_arrays(row))) == mask.sum()
