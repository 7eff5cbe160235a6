"""Blank infilling: turning a row of text tokens into a GLM example (pure, stateless TF ops).

`assemble` builds the contract fields from spans chosen by `span_sampling`. Worked example
(DESIGN.md, paper Fig. 2): the row `[CLS] x1 x2 x3 x4 x5 x6 [eos]` with spans x3 (start 3,
length 1) and x5 x6 (start 5, length 2), Part B order (1, 0):

    inputs     [CLS] x1 x2 [M] x4 [M] [eos] sop x5 x6  sop x3
    targets     0    0  0   0  0   0   0    x5  x6 eop x3  eop
    loss_w      0    0  0   0  0   0   0    1   1  1   1   1
    span_ids    0    0  0   0  0   0   0    2   2  2   1   1
"""

import math

import numpy as np
import scipy.stats
import tensorflow as tf


def assemble(tokens, starts, lengths, order, marker, sop, eop):
    """Contract fields of one example, each `[n + 2k]` int32.

    Args:
      tokens: `[n]` int32 text of the row.
      starts, lengths: `[k]` int32 spans in text order, non-overlapping (they may touch).
      order: `[k]` int32 permutation: Part B lists span `order[0]` first, and so on.
      marker: the blank token put in Part A for every span ([MASK], [sMASK] or [gMASK]).
      sop, eop: the tokens that open a Part B span (input) and close it (target).
    """
    n = tf.shape(tokens)[0]
    k = tf.shape(starts)[0]
    ones = tf.ones([k], tf.int32)
    # +1 at each span start, -1 at each end: the running sum is 1 inside a span.
    delta = tf.scatter_nd(starts[:, None], ones, [n + 1]) - tf.scatter_nd((starts + lengths)[:, None], ones, [n + 1])
    inside = tf.cumsum(delta)[:n] > 0
    is_start = tf.scatter_nd(starts[:, None], ones, [n]) > 0
    part_a = tf.boolean_mask(tf.where(is_start, marker, tokens), tf.logical_or(~inside, is_start))

    # Part B: for each position, the span it belongs to and its offset inside `sop + span`.
    piece_lengths = tf.gather(lengths, order) + 1
    piece = tf.repeat(tf.range(k), piece_lengths)
    offset = tf.range(tf.reduce_sum(piece_lengths)) - tf.gather(tf.cumsum(piece_lengths, exclusive=True), piece)
    span = tf.gather(order, piece)
    source = tf.gather(starts, span) + offset  # text position of this position's target
    b_targets = tf.where(offset == tf.gather(lengths, span), eop, tf.gather(tokens, tf.minimum(source, n - 1)))
    b_inputs = tf.where(offset == 0, sop, tf.gather(tokens, tf.maximum(source - 1, 0)))

    len_a = tf.shape(part_a)[0]
    zeros_a = tf.zeros([len_a], tf.int32)
    return {
        "inputs": tf.concat([part_a, b_inputs], 0),
        "targets": tf.concat([zeros_a, b_targets], 0),
        "loss_weights": tf.concat([zeros_a, tf.ones_like(b_targets)], 0),
        "span_ids": tf.concat([zeros_a, span + 1], 0),
    }


def block_mask(example, seed, prob, sop, dblock):
    """Replaces each Part B input except `sop` by `dblock` with probability `prob`; targets stay."""
    inputs = example["inputs"]
    hit = tf.random.stateless_uniform(tf.shape(inputs), seed) < prob
    hit = tf.logical_and(hit, tf.logical_and(example["span_ids"] > 0, inputs != sop))
    return {**example, "inputs": tf.where(hit, dblock, inputs)}


def span_length_log_pmf(mean: float = 3.0, max_length: int = 39) -> np.ndarray:
    """Log-probabilities of span lengths 1..max_length: Poisson(mean) truncated to that range."""
    pmf = scipy.stats.poisson.pmf(np.arange(1, max_length + 1), mean)
    return np.log(pmf / pmf.sum()).astype(np.float32)


def span_length_cdf(mean: float = 3.0, max_length: int = 39) -> np.ndarray:
    """Cumulative probabilities of lengths 1..max_length (the last exactly 1), for inverse-CDF draws."""
    cdf = np.cumsum(np.exp(span_length_log_pmf(mean, max_length).astype(np.float64)))
    return np.append(cdf[:-1] / cdf[-1], 1.0).astype(np.float32)


def text_length(seq_len: int, ratio: float = 0.15, mean: float = 3.0, max_length: int = 39) -> int:
    """Tokens of text per row so that Part A + Part B fits `seq_len` with overwhelming probability.

    An example of n text tokens with k spans takes n + 2k positions. k is the number of span draws
    needed to cover ceil(ratio * n) tokens: its mean plus eight standard deviations (renewal
    approximation) is reserved. Rows that would still overflow take fewer spans (never observed:
    the excess probability is below 1e-12).
    """
    p = np.exp(span_length_log_pmf(mean, max_length))
    lengths = np.arange(1, max_length + 1)
    mu, var = (p * lengths).sum(), (p * lengths**2).sum() - (p * lengths).sum() ** 2
    for n in range(seq_len, 0, -1):
        target = math.ceil(ratio * n)
        k_high = target / mu + 1 + 8 * math.sqrt(target * var / mu**3)
        if n + 2 * math.ceil(k_high) <= seq_len:
            return n
    raise ValueError(f"seq_len={seq_len} is too short for blank infilling.")
