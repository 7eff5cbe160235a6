"""Where the blanks go: the span samplers of GLM's three objectives (stateless TF ops).

Each sampler returns `(starts, lengths, order)`, `[k]` int32 each: spans in text order inside
positions `first..n-1` of a row (position 0 holds [CLS]), and the Part B order (a uniform random
permutation). `infilling.assemble` turns them into an example.
"""

import tensorflow as tf


def _part_b_order(seed, k):
    return tf.cast(tf.argsort(tf.random.stateless_uniform([k], seed)), tf.int32)


def sample_short_spans(seed, n, max_spans, cdf, ratio=0.15, first=1):
    """Short spans (NLU objective), as the official GLM code chooses them.

    Lengths are drawn i.i.d. from `cdf` (cumulative probabilities of lengths 1..len) until they
    cover ceil(ratio * n) tokens, at most `max_spans` of them and no more than fit into the row
    with a gap between spans. They are shuffled, then placed uniformly at random with at least one
    unmasked token between neighbours. (One uniform draw of [4, max_spans] feeds all four random
    choices: few ops per example keep the transform fast.)
    """
    u = tf.random.stateless_uniform([4, max_spans], seed)
    region = n - first
    draws = tf.searchsorted(cdf, u[0], side="right", out_type=tf.int32) + 1
    covered = tf.cumsum(draws)
    target = tf.cast(tf.math.ceil(ratio * tf.cast(n, tf.float32)), tf.int32)
    needed = tf.reduce_sum(tf.cast(covered < target, tf.int32)) + 1
    fits = tf.reduce_sum(tf.cast(covered + tf.range(max_spans) <= region, tf.int32))
    k = tf.minimum(tf.minimum(needed, fits), max_spans)
    lengths = tf.gather(draws[:k], tf.argsort(u[1, :k]))
    free = region - tf.reduce_sum(lengths) - k + 1
    places = tf.sort(tf.cast(u[2, :k] * tf.cast(free + 1, tf.float32), tf.int32))
    starts = first + places + tf.cumsum(lengths + 1, exclusive=True)
    return starts, lengths, tf.cast(tf.argsort(u[3, :k]), tf.int32)


def sample_document_span(seed, n, min_ratio, infill_prob, suffix_only, first=1):
    """One long span (document-level generation objective).

    Its length is uniform over ceil(min_ratio * m)..m tokens, m = n - first. With probability
    `infill_prob`, unless `suffix_only` (a row that holds several documents), it is placed
    anywhere; otherwise it is the suffix, giving `text [gMASK] | sop continuation`.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    region = tf.maximum(n - first, 1)
    low = tf.minimum(tf.cast(tf.math.ceil(min_ratio * tf.cast(region, tf.float32)), tf.int32), region)
    low = tf.maximum(low, 1)
    length = tf.random.stateless_uniform([], seeds[0], minval=low, maxval=region + 1, dtype=tf.int32)
    infill = tf.logical_and(tf.random.stateless_uniform([], seeds[1]) < infill_prob, tf.logical_not(suffix_only))
    anywhere = first + tf.random.stateless_uniform([], seeds[2], minval=0, maxval=region - length + 1, dtype=tf.int32)
    start = tf.where(infill, anywhere, first + region - length)
    k = tf.cast(n - first >= 1, tf.int32)  # a row of [CLS] alone gets no span
    return tf.reshape(start, [1])[:k], tf.reshape(length, [1])[:k], tf.zeros([k], tf.int32)


def sample_sentences(seed, tokens, is_sentence_end, eos, max_spans, ratio=0.15, first=1):
    """Whole sentences (sentence-level objective), as the official GLM code chooses them.

    A sentence ends after a token flagged in `is_sentence_end` (`[vocab]` bool) or at `eos`,
    which belongs to no sentence. Sentences are taken in a uniformly random order until they cover
    ceil(ratio * n) tokens (at most `max_spans` of them); they may be adjacent.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    n = tf.shape(tokens)[0]
    position = tf.range(n)
    is_eos = tokens == eos
    in_text = tf.logical_and(position >= first, tf.logical_not(is_eos))
    sentence = tf.cumsum(tf.cast(tf.logical_or(tf.gather(is_sentence_end, tokens), is_eos), tf.int32), exclusive=True)
    count = sentence[-1] + 1
    lengths = tf.math.unsorted_segment_sum(tf.cast(in_text, tf.int32), sentence, count)
    starts = tf.math.unsorted_segment_min(tf.where(in_text, position, n), sentence, count)
    keys = tf.where(lengths > 0, tf.random.stateless_uniform([count], seeds[0]), 2.0)
    shuffled = tf.argsort(keys)
    covered = tf.cumsum(tf.gather(lengths, shuffled))
    target = tf.cast(tf.math.ceil(ratio * tf.cast(n, tf.float32)), tf.int32)
    k = tf.reduce_sum(tf.cast(covered < target, tf.int32)) + 1
    k = tf.minimum(tf.minimum(k, tf.reduce_sum(tf.cast(lengths > 0, tf.int32))), max_spans)
    chosen = shuffled[:k]
    chosen = tf.gather(chosen, tf.argsort(tf.gather(starts, chosen)))  # back to text order
    return tf.gather(starts, chosen), tf.gather(lengths, chosen), _part_b_order(seeds[1], k)
