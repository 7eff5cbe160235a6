"""Blank infilling: turning a row of text tokens into a GLM example (pure, stateless TF ops).

`assemble` builds the contract fields of a batch of rows from spans chosen by `span_sampling`.
Worked example (paper Fig. 2, docs/data.md): the row `[CLS] x1 x2 x3 x4 x5 x6 [eos]` with spans x3 (start 3,
length 1) and x5 x6 (start 5, length 2), Part B order (1, 0):

    inputs     [CLS] x1 x2 [M] x4 [M] [eos] sop x5 x6  sop x3
    targets     0    0  0   0  0   0   0    x5  x6 eop x3  eop
    loss_w      0    0  0   0  0   0   0    1   1  1   1   1
    span_ids    0    0  0   0  0   0   0    2   2  2   1   1
"""

from glm_jax.data.host_tf import tf


def _spans(texts, starts, lengths):
    """The spans on the flattened batch: each span's first flat position (text order), and per
    token whether it lies inside a span and whether it starts one."""
    tokens = texts.flat_values
    total = tf.shape(tokens)[0]
    flat_starts = starts.flat_values + tf.gather(texts.row_starts(), starts.value_rowids())
    ones = tf.ones_like(flat_starts)
    # +1 at each span start, -1 at each end: the running sum is 1 inside a span.
    ends = flat_starts + lengths.flat_values
    delta = tf.scatter_nd(flat_starts[:, None], ones, [total + 1]) - tf.scatter_nd(ends[:, None], ones, [total + 1])
    inside = tf.cumsum(delta)[:total] > 0
    is_start = tf.scatter_nd(flat_starts[:, None], ones, [total]) > 0
    return flat_starts, inside, is_start


def assemble(texts, starts, lengths, order, marker, sop, eop):
    """Contract fields of a batch of examples, each a `tf.RaggedTensor` `[R, (n + 2k)]` int32.

    All rows are built by the same few ops on the flattened batch, so their cost is shared.

    Args:
      texts: `[R, (n)]` ragged int32, the text of each row.
      starts, lengths: `[R, (k)]` ragged int32, each row's spans in text order, non-overlapping
        (they may touch), as positions inside the row.
      order: `[R, (k)]` ragged int32, a permutation per row: Part B lists span `order[r, 0]` first.
      marker: the blank token put in Part A for every span ([MASK], [sMASK] or [gMASK]), or one
        per span (flat, the spans of all rows in text order: sentinel tokens).
      sop: the token that opens every Part B span, or one per span (flat, as `marker`).
      eop: the token that closes a Part B span (target).
    """
    tokens = texts.flat_values
    total = tf.shape(tokens)[0]
    flat_starts, inside, is_start = _spans(texts, starts, lengths)
    # `order` as indices into the flat list of spans.
    flat_lengths = lengths.flat_values
    flat_order = order.flat_values + tf.gather(order.row_starts(), order.value_rowids())
    markers = tf.scatter_nd(flat_starts[:, None], tf.broadcast_to(marker, tf.shape(flat_starts)), [total])
    keep = texts.with_flat_values(tf.logical_or(~inside, is_start))
    part_a = tf.ragged.boolean_mask(texts.with_flat_values(tf.where(is_start, markers, tokens)), keep)

    # Part B: for each position, the span it belongs to and its offset inside `sop + span`.
    piece_lengths = tf.gather(flat_lengths, flat_order) + 1
    piece = tf.repeat(tf.range(tf.shape(flat_order)[0]), piece_lengths)
    offset = tf.range(tf.reduce_sum(piece_lengths)) - tf.gather(tf.cumsum(piece_lengths, exclusive=True), piece)
    span = tf.gather(flat_order, piece)
    source = tf.gather(flat_starts, span) + offset  # flat position of this position's target
    b_targets = tf.where(offset == tf.gather(flat_lengths, span), eop, tf.gather(tokens, tf.minimum(source, total - 1)))
    sops = tf.gather(tf.broadcast_to(sop, tf.shape(flat_starts)), span)
    b_inputs = tf.where(offset == 0, sops, tf.gather(tokens, tf.maximum(source - 1, 0)))
    part_b = tf.RaggedTensor.from_row_lengths(b_inputs, tf.reduce_sum(lengths + 1, axis=1))

    def with_b(a_values, b_values):
        return tf.concat([part_a.with_flat_values(a_values), part_b.with_flat_values(b_values)], axis=1)

    zeros_a = tf.zeros_like(part_a.flat_values)
    return {
        "inputs": with_b(part_a.flat_values, b_inputs),
        "targets": with_b(zeros_a, b_targets),
        "loss_weights": with_b(zeros_a, tf.ones_like(b_targets)),
        "span_ids": with_b(zeros_a, tf.gather(order.flat_values, piece) + 1),
    }


def mask_in_place(texts, starts, lengths, mask):
    """A masked LM's examples (BERT; the official --masked-lm): every token of a span replaced by
    `mask` where it stands, the original its target, all of the row Part A. For the row
    `[CLS] a b c d e f g h` and spans `b c`, `f g`:

        inputs     [CLS] a [M] [M] d e [M] [M] h
        targets     0    0  b   c  0 0  f   g  0
        loss_w      0    0  1   1  0 0  1   1  0
        span_ids    0    0  0   0  0 0  0   0  0
    """
    tokens = texts.flat_values
    _, inside, _ = _spans(texts, starts, lengths)
    weights = tf.cast(inside, tf.int32)
    return {
        "inputs": texts.with_flat_values(tf.where(inside, mask, tokens)),
        "targets": texts.with_flat_values(tokens * weights),
        "loss_weights": texts.with_flat_values(weights),
        "span_ids": texts.with_flat_values(tf.zeros_like(tokens)),
    }


def block_mask(example, seed, prob, dblock):
    """Replaces each Part B input but a span's first (its sop) by `dblock` with probability `prob`; targets stay."""
    inputs, spans = example["inputs"].flat_values, example["span_ids"].flat_values
    hit = tf.random.stateless_uniform(tf.shape(inputs), seed) < prob
    opens_span = spans != tf.pad(spans[:-1], [[1, 0]], constant_values=-1)
    hit = tf.logical_and(hit, tf.logical_and(spans > 0, ~opens_span))
    return {**example, "inputs": example["inputs"].with_flat_values(tf.where(hit, dblock, inputs))}
