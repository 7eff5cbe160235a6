"""Where the blanks go: the span samplers of GLM's three objectives (stateless TF ops over a batch).

Each sampler works on a batch of R rows at once and returns `(starts, lengths, order)`, ragged
`[R, (k)]` int32 each: every row's spans in text order inside its positions `first..n-1`
(position 0 holds [CLS]), and its Part B order (a uniform random permutation of 0..k-1).
`infilling.assemble` turns them into examples. Working on the batch keeps the op count per row
small, which is what sets the speed of the pipeline.
"""

import tensorflow as tf


def _shuffled_slots(u, valid):
    """Per row of `u` `[R, K]`: the valid slots in a uniformly random order, then the invalid ones."""
    return tf.argsort(tf.where(valid, u, 2.0), axis=1, stable=True, direction="ASCENDING")


def _ragged(values, k):
    """The first `k[r]` entries of each row of `values` `[R, K]`."""
    return tf.RaggedTensor.from_tensor(values, lengths=k, row_splits_dtype=tf.int32)


def sample_short_spans(seed, n, max_spans, cdf, ratio=0.15, first=1):
    """Short spans (NLU objective), as the official GLM code chooses them.

    For each row (`n`, `max_spans`: `[R]` int32) lengths are drawn i.i.d. from `cdf` (cumulative
    probabilities of lengths 1..len) until they cover ceil(ratio * n) tokens, at most
    `max_spans` of them and no more than fit into the row with a gap between spans. They are
    shuffled, then placed uniformly at random with at least one unmasked token between neighbours.
    """
    rows = tf.shape(n)[0]
    width = tf.maximum(tf.reduce_max(max_spans), 1)
    u = tf.random.stateless_uniform([4, rows, width], seed)
    slot = tf.range(width)[None, :]
    region = n - first
    draws = tf.searchsorted(tf.broadcast_to(cdf, [rows, tf.size(cdf)]), u[0], side="right", out_type=tf.int32) + 1
    covered = tf.cumsum(draws, axis=1)
    target = tf.cast(tf.math.ceil(ratio * tf.cast(n, tf.float32)), tf.int32)[:, None]
    needed = tf.reduce_sum(tf.cast(covered < target, tf.int32), axis=1) + 1
    fits = tf.logical_and(covered + slot <= region[:, None], slot < max_spans[:, None])
    k = tf.minimum(needed, tf.reduce_sum(tf.cast(fits, tf.int32), axis=1))
    valid = slot < k[:, None]
    lengths = tf.where(valid, tf.gather(draws, _shuffled_slots(u[1], valid), batch_dims=1), 0)
    free = region - tf.reduce_sum(lengths, axis=1) - k + 1
    places = tf.cast(u[2] * tf.cast(free + 1, tf.float32)[:, None], tf.int32)
    places = tf.sort(tf.where(valid, places, tf.int32.max), axis=1)
    starts = first + places + tf.cumsum(lengths + 1, axis=1, exclusive=True)
    order = _shuffled_slots(u[3], valid)
    return _ragged(starts, k), _ragged(lengths, k), _ragged(order, k)


def sample_document_span(seed, n, min_ratio, infill_prob, suffix_only, first=1):
    """One long span per row (document-level generation objective).

    Its length is uniform over ceil(min_ratio * m)..m tokens, m = n - first. With probability
    `infill_prob`, unless `suffix_only` (`[R]` bool: the row holds several documents), it is
    placed anywhere; otherwise it is the suffix, giving `text [gMASK] | sop continuation`.
    """
    u = tf.random.stateless_uniform([3, tf.shape(n)[0]], seed)
    region = tf.maximum(n - first, 1)
    low = tf.cast(tf.math.ceil(min_ratio * tf.cast(region, tf.float32)), tf.int32)
    low = tf.clip_by_value(low, 1, region)
    length = low + tf.cast(u[0] * tf.cast(region - low + 1, tf.float32), tf.int32)
    infill = tf.logical_and(u[1] < infill_prob, tf.logical_not(suffix_only))
    anywhere = first + tf.cast(u[2] * tf.cast(region - length + 1, tf.float32), tf.int32)
    start = tf.where(infill, anywhere, first + region - length)
    k = tf.cast(n - first >= 1, tf.int32)  # a row of [CLS] alone gets no span
    return _ragged(start[:, None], k), _ragged(length[:, None], k), _ragged(tf.zeros_like(start)[:, None], k)


def _row_rank(rows, num_rows):
    """Rank of each entry among the entries of its row, for `rows` sorted ascending."""
    index = tf.range(tf.shape(rows)[0])
    return index - tf.gather(tf.math.unsorted_segment_min(index, rows, num_rows), rows)


def _sort_within_rows(keys, rows):
    """Indices ordering entries by row, then by `keys` (`rows` sorted ascending)."""
    by_key = tf.argsort(keys, stable=True)
    return tf.gather(by_key, tf.argsort(tf.gather(rows, by_key), stable=True))


def sample_sentences(seed, texts, is_sentence_end, eos, max_spans, ratio=0.15, first=1):
    """Whole sentences (sentence-level objective), as the official GLM code chooses them.

    In each row of `texts` (`[R, (n)]` ragged) a sentence ends after a token flagged in
    `is_sentence_end` (`[vocab]` bool) or at `eos`, which belongs to no sentence. Sentences are
    taken in a uniformly random order until they cover ceil(ratio * n) tokens (at most
    `max_spans[r]` of them); they may be adjacent.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    tokens, row = texts.flat_values, texts.value_rowids()
    num_rows = texts.nrows()
    position = tf.range(tf.shape(tokens)[0]) - tf.gather(texts.row_starts(), row)
    is_eos = tokens == eos
    in_text = tf.logical_and(position >= first, tf.logical_not(is_eos))
    ends = tf.logical_or(tf.gather(is_sentence_end, tokens), is_eos)
    opens = tf.logical_or(position == 0, tf.pad(ends[:-1], [[1, 0]]))
    sentence = tf.cumsum(tf.cast(opens, tf.int32)) - 1  # numbered over the whole batch, in text order
    count = sentence[-1] + 1
    lengths = tf.math.unsorted_segment_sum(tf.cast(in_text, tf.int32), sentence, count)
    starts = tf.math.unsorted_segment_min(tf.where(in_text, position, tf.int32.max), sentence, count)
    sentence_row = tf.math.unsorted_segment_min(row, sentence, count)
    # Per row, sentences with text in a random order (empty ones last), taken while under the target.
    keys = tf.where(lengths > 0, tf.random.stateless_uniform([count], seeds[0]), 2.0)
    shuffled = _sort_within_rows(keys, sentence_row)
    shuffled_row = tf.gather(sentence_row, shuffled)
    covered = tf.cumsum(tf.gather(lengths, shuffled))
    covered -= tf.gather(tf.math.unsorted_segment_min(covered - tf.gather(lengths, shuffled), shuffled_row, num_rows),
                         shuffled_row)  # fmt: skip
    n = texts.row_lengths()
    target = tf.cast(tf.math.ceil(ratio * tf.cast(n, tf.float32)), tf.int32)
    under = tf.cast(covered < tf.gather(target, shuffled_row), tf.int32)
    k = tf.math.unsorted_segment_sum(under, shuffled_row, num_rows) + 1
    nonempty = tf.math.unsorted_segment_sum(tf.cast(lengths > 0, tf.int32), sentence_row, num_rows)
    k = tf.minimum(tf.minimum(k, nonempty), max_spans)
    chosen = tf.sort(tf.boolean_mask(shuffled, _row_rank(shuffled_row, num_rows) < tf.gather(k, shuffled_row)))
    chosen_row = tf.gather(sentence_row, chosen)  # sorted: sentence numbers follow the text
    order = _sort_within_rows(tf.random.stateless_uniform(tf.shape(chosen), seeds[1]), chosen_row)
    order -= tf.gather(tf.math.unsorted_segment_min(tf.range(tf.shape(chosen)[0]), chosen_row, num_rows), chosen_row)
    ragged = lambda values: tf.RaggedTensor.from_value_rowids(values, chosen_row, nrows=num_rows)  # noqa: E731
    return ragged(tf.gather(starts, chosen)), ragged(tf.gather(lengths, chosen)), ragged(order)
