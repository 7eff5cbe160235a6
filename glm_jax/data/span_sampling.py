"""Where the blanks go: the span samplers of GLM's three objectives (stateless TF ops over a batch).

Each sampler works on a batch of R rows at once and returns `(starts, lengths, order)`, ragged
`[R, (k)]` int32 each: every row's spans in text order inside its positions `first..n-1`
(position 0 holds [CLS]), and its Part B order (a uniform random permutation of 0..k-1).
`infilling.assemble` turns them into examples. Working on the batch keeps the op count per row
small, which is what sets the speed of the pipeline.

A row may hold several documents, each ending with eos. As in the official collator, a short span
or a sentence lies inside one document and never covers an eos; so does the document-level span
when it infills. Only its suffix layout may run over eos tokens (the official code continues
across documents there).
"""

from glm_jax.data.host_tf import tf


def _shuffled_slots(u, valid):
    """Per row of `u` `[R, K]`: the valid slots in a uniformly random order, then the invalid ones."""
    return tf.argsort(tf.where(valid, u, 2.0), axis=1, stable=True, direction="ASCENDING")


def _ragged(values, k):
    """The first `k[r]` entries of each row of `values` `[R, K]`."""
    return tf.RaggedTensor.from_tensor(values, lengths=k, row_splits_dtype=tf.int32)


def _row_start(rows, num_rows):
    """For each entry, the index of the first entry of its row (`rows` sorted ascending)."""
    return tf.gather(tf.math.unsorted_segment_min(tf.range(tf.shape(rows)[0]), rows, num_rows), rows)


def _row_rank(rows, num_rows):
    """Rank of each entry among the entries of its row, for `rows` sorted ascending."""
    return tf.range(tf.shape(rows)[0]) - _row_start(rows, num_rows)


def _exclusive_cumsum_in_rows(values, rows, num_rows):
    """Running sum of `values` over the earlier entries of each entry's row (`rows` sorted ascending)."""
    running = tf.cumsum(values, exclusive=True)
    return running - tf.gather(running, _row_start(rows, num_rows))


def _sort_within_rows(keys, rows):
    """Indices ordering entries by row, then by `keys` (`rows` sorted ascending)."""
    by_key = tf.argsort(keys, stable=True)
    return tf.gather(by_key, tf.argsort(tf.gather(rows, by_key), stable=True))


def _shuffle_within_rows(u, rows):
    """Indices ordering entries by row (`rows` sorted ascending), then by `u` (float32 in [0, 1)).

    One sort on `rows + u`: float64 holds that sum exactly, a float32 uniform having 23 bits.
    """
    return tf.argsort(tf.cast(rows, tf.float64) + tf.cast(u, tf.float64), stable=True)


def _documents(texts, eos, first):
    """The documents of the rows of `texts` (`[R, (n)]` ragged): the maximal runs of positions
    `>= first` that hold no `eos`, in text order. Returns their row, first position and size, `[D]` each.

    Only the eos positions are looked up in the flat batch; the rest works on one cut per eos or row.
    """
    row_starts, row_limits = texts.row_starts(), texts.row_limits()
    at_eos = tf.cast(tf.where(texts.flat_values == eos)[:, 0], tf.int32)
    # A document ends at a cut, an eos or its row's end: the cuts in text order, a row's end
    # after its eos tokens and before the next row's eos tokens.
    cut = tf.concat([at_eos, row_limits], 0)
    cut_row = tf.concat([tf.searchsorted(row_limits, at_eos, side="right"), tf.range(texts.nrows())], 0)
    by_position = tf.argsort(tf.concat([2 * at_eos, 2 * row_limits - 1], 0), stable=True)
    cut, cut_row = tf.gather(cut, by_position), tf.gather(cut_row, by_position)
    # It begins after the previous cut of its row, and at `first` at the earliest.
    row_first = tf.gather(row_starts, cut_row) + first
    same_row = tf.equal(cut_row, tf.pad(cut_row[:-1], [[1, 0]], constant_values=-1))
    start = tf.maximum(tf.where(same_row, tf.pad(cut[:-1], [[1, 0]]) + 1, row_first), row_first)
    keep = tf.where(cut > start)[:, 0]
    cut_row, start, cut = tf.gather(cut_row, keep), tf.gather(start, keep), tf.gather(cut, keep)
    return cut_row, start - tf.gather(row_starts, cut_row), cut - start


def sample_short_spans(seed, texts, eos, max_spans, cdf, ratio=0.15, first=1):
    """Short spans (NLU objective), as the official GLM code chooses them: inside documents.

    For each row of `texts` (`[R, (n)]` ragged) lengths are drawn i.i.d. from `cdf` (cumulative
    probabilities of lengths 1..len) until they cover ceil(ratio * n) tokens, at most
    `max_spans[r]` (`[R]` int32) of them, and shuffled. The row holds documents, each ending with
    `eos`, and every span goes inside one document (positions `>= first`, no eos). As in the
    official collator (`sample_span_in_document`), each document but the longest of its row takes
    spans worth at most floor(ratio * its size) tokens, and the longest takes the rest, as many
    as fit into it with a gap between spans. Inside its document each span is placed uniformly at
    random with at least one unmasked token between neighbours. A row without eos is a single
    document: its spans follow the paper's row-level rule.
    """
    num_rows = texts.nrows()
    width = tf.maximum(tf.reduce_max(max_spans), 1)
    u = tf.random.stateless_uniform([4, num_rows, width], seed)
    slot = tf.range(width)[None, :]
    draws = tf.searchsorted(tf.broadcast_to(cdf, [num_rows, tf.size(cdf)]), u[0], side="right", out_type=tf.int32) + 1
    n = texts.row_lengths()
    target = tf.cast(tf.math.ceil(ratio * tf.cast(n, tf.float32)), tf.int32)
    needed = tf.reduce_sum(tf.cast(tf.cumsum(draws, axis=1) < target[:, None], tf.int32), axis=1) + 1
    valid = slot < tf.minimum(needed, max_spans)[:, None]
    lengths = tf.where(valid, tf.gather(draws, _shuffled_slots(u[1], valid), batch_dims=1), 0)
    where = tf.where(valid)  # the spans, flat: row by row, each row's in their shuffled order
    span_row, span_length = tf.cast(where[:, 0], tf.int32), tf.gather_nd(lengths, where)

    # Which document takes each span. Every document but the longest of its row owns the next
    # floor(ratio * size) tokens of the row's running total of span lengths (documents in text
    # order); a span goes to the document owning all of it, or else to the longest.
    doc_row, doc_start, size = _documents(texts, eos, first)
    docs = tf.shape(size)[0]
    index = tf.range(docs)
    is_max = size == tf.gather(tf.math.unsorted_segment_max(size, doc_row, num_rows), doc_row)
    longest = tf.math.unsorted_segment_min(tf.where(is_max, index, docs), doc_row, num_rows)
    longest = tf.minimum(longest, docs)  # the first longest document, or `docs` where the row holds none
    budget = tf.cast(ratio * tf.cast(size, tf.float32), tf.int32)
    budget = tf.where(index == tf.gather(longest, doc_row), 0, budget)
    # One axis for the whole batch, rows `stride` apart: where each share and each span ends on it.
    stride = tf.cast(tf.maximum(tf.reduce_max(n), tf.reduce_max(tf.reduce_sum(lengths, axis=1))) + 1, tf.int64)
    share_end = _exclusive_cumsum_in_rows(budget, doc_row, num_rows) + budget
    share_end = tf.cast(doc_row, tf.int64) * stride + tf.cast(share_end, tf.int64)
    span_end = tf.cast(span_row, tf.int64) * stride + tf.cast(tf.gather_nd(tf.cumsum(lengths, axis=1), where), tf.int64)
    owner = tf.searchsorted(share_end, span_end - tf.cast(span_length, tf.int64), side="right", out_type=tf.int32)
    owner_row = tf.gather(tf.pad(doc_row, [[0, 1]], constant_values=-1), owner)
    owned = tf.logical_and(owner_row == span_row, span_end <= tf.gather(tf.pad(share_end, [[0, 1]]), owner))
    doc = tf.where(owned, owner, tf.gather(longest, span_row))

    # Each document keeps its spans (in the shuffled order) while they fit with gaps between them.
    group = tf.argsort(doc * width + tf.cast(where[:, 1], tf.int32), stable=True)
    doc, span_length = tf.gather(doc, group), tf.gather(span_length, group)
    size, doc_start = tf.pad(size, [[0, 1]]), tf.pad(doc_start, [[0, 1]])
    before = _exclusive_cumsum_in_rows(span_length + 1, doc, docs + 1)  # earlier spans and their gaps
    keep = tf.where(before + span_length <= tf.gather(size, doc))[:, 0]
    doc, span_length, spans = tf.gather(doc, keep), tf.gather(span_length, keep), tf.gather(group, keep)
    # Stars and bars inside each document: sorted uniform places in 0..free, spans in order.
    free = size - tf.math.unsorted_segment_sum(span_length + 1, doc, docs + 1) + 1
    u_place = tf.gather_nd(u[2], tf.gather(where, spans))
    u_place = tf.gather(u_place, _shuffle_within_rows(u_place, doc))
    place = tf.cast(u_place * tf.cast(tf.gather(free, doc) + 1, tf.float32), tf.int32)
    starts = tf.gather(doc_start, doc) + place + tf.gather(before, keep)  # a prefix of each document's spans
    # Documents follow the text, so the spans are now in text order, row by row.
    row = tf.gather(tf.pad(doc_row, [[0, 1]]), doc)
    order = _shuffle_within_rows(tf.gather_nd(u[3], tf.gather(where, spans)), row) - _row_start(row, num_rows)
    splits = tf.pad(tf.cumsum(tf.math.unsorted_segment_sum(tf.ones_like(row), row, num_rows)), [[1, 0]])
    ragged = lambda values: tf.RaggedTensor.from_row_splits(values, splits, validate=False)  # noqa: E731
    return ragged(starts), ragged(span_length), ragged(order)


def sample_document_span(seed, n, min_ratio, infill_prob, suffix_only, ends_with_eos, first=1):
    """One long span per row (document-level generation objective).

    With probability `infill_prob`, unless `suffix_only` (`[R]` bool: the row holds several
    documents), it is placed anywhere in the text but a final eos (`ends_with_eos`, `[R]` bool),
    so it covers no eos. Otherwise it is the suffix, giving `text [gMASK] | sop continuation`;
    as in the official code it may run over eos tokens (the continuation goes on across documents,
    or ends with the document's eos). Its length is uniform over ceil(min_ratio * m)..m tokens, m
    the positions `first..n-1` that layout may cover. A row whose text is a lone eos takes the suffix.
    """
    u = tf.random.stateless_uniform([3, tf.shape(n)[0]], seed)
    whole = n - first
    final_eos = tf.cast(ends_with_eos, tf.int32)
    infill = tf.logical_and(u[1] < infill_prob, tf.logical_not(suffix_only))
    infill = tf.logical_and(infill, whole - final_eos >= 1)
    region = tf.maximum(tf.where(infill, whole - final_eos, whole), 1)
    low = tf.cast(tf.math.ceil(min_ratio * tf.cast(region, tf.float32)), tf.int32)
    low = tf.clip_by_value(low, 1, region)
    length = low + tf.cast(u[0] * tf.cast(region - low + 1, tf.float32), tf.int32)
    anywhere = first + tf.cast(u[2] * tf.cast(region - length + 1, tf.float32), tf.int32)
    start = tf.where(infill, anywhere, first + region - length)
    k = tf.cast(whole >= 1, tf.int32)  # a row of [CLS] alone gets no span
    return _ragged(start[:, None], k), _ragged(length[:, None], k), _ragged(tf.zeros_like(start)[:, None], k)


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
    order -= _row_start(chosen_row, num_rows)
    ragged = lambda values: tf.RaggedTensor.from_value_rowids(values, chosen_row, nrows=num_rows)  # noqa: E731
    return ragged(tf.gather(starts, chosen)), ragged(tf.gather(lengths, chosen)), ragged(order)
