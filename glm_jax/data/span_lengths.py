"""Span lengths of the short-span objective (Poisson, truncated) and the row sizes they imply.

NumPy and SciPy only: the engine and the compile/benchmark commands derive a row's scored capacity
from here without TensorFlow (`short_spans_max_scored`).
"""

import math

import numpy as np
import scipy.stats


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


def short_spans_max_scored(seq_len: int, ratio: float = 0.15, mean: float = 3.0, max_length: int = 39) -> int:
    """The most scored (Part B) positions a row of `seq_len` can hold as one short-span example (not
    packed): `ShortSpans(ratio, mean)`, span lengths in 1..`max_length`.

    Part B of an example with text of n tokens and k spans of m masked tokens in all holds m + k
    positions (each span's tokens and its eop as targets). For short spans (`ShortSpans`), as
    `span_sampling.sample_short_spans` draws them: lengths 1..`longest` are drawn until they cover
    t = ceil(ratio * n), so the draws before the last sum to at most t - 1 and m <= t - 1 + longest;
    every draw is >= 1, so k <= t, and k <= (seq_len - n) // 2, the sampler's cap; spans only get
    dropped after that (documents too short), never added. Also m + k <= n (spans lie in the text
    after position 0 with a gap between them). So

        max_scored = max over n in 1..text_length(seq_len) of min(n, t + longest - 1 + min(t, (seq_len - n) // 2))

    (rows shorter than full, from `short_seq_prob` or a group's tail, count too). E.g. 157 of 512
    positions (ratio 0.15, mean span 3, longest 39), 68 of 128. (The document-level span covers
    50-100% of the text and a sentence may be the whole text: `seq_len` for both.)
    """
    longest = max_length
    n = np.arange(1, text_length(seq_len, ratio, mean, max_length) + 1)
    t = np.ceil(np.float32(ratio) * n.astype(np.float32)).astype(np.int64)  # as the sampler rounds
    bound = np.minimum(n, t + longest - 1 + np.minimum(t, (seq_len - n) // 2))
    return int(min(bound.max(), seq_len))


def masked_lm_max_scored(seq_len: int, ratio: float = 0.15, max_length: int = 39) -> int:
    """The most masked (scored) positions of a masked-LM row of `seq_len` text tokens
    (`objectives.MaskedLM`): spans are drawn until they cover t = ceil(ratio * seq_len), so they
    mask at most t - 1 + `max_length` tokens, and never more than the row."""
    t = int(np.ceil(np.float32(ratio) * np.float32(seq_len)))
    return min(t - 1 + max_length, seq_len)
