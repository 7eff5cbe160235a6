"""Blank infilling: exact outputs on the worked example, and statistics of the short-span sampler."""

import collections
import itertools

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from examples import examples_of, rebuild_row

from glm_jax.data import infilling, span_lengths, span_sampling

CLS, EOS, MASK, SOP, EOP = 3, 1, 5, 8, 9


def ragged(rows):
    return tf.ragged.constant(rows, tf.int32, row_splits_dtype=tf.int32)


def test_worked_example_exact():
    x1, x2, x3, x4, x5, x6 = 11, 12, 13, 14, 15, 16
    texts = ragged([[CLS, x1, x2, x3, x4, x5, x6, EOS]])
    out = infilling.assemble(texts, ragged([[3, 5]]), ragged([[1, 2]]), ragged([[1, 0]]), MASK, SOP, EOP)
    out = {k: v.to_list()[0] for k, v in out.items()}
    assert out == {
        "inputs": [CLS, x1, x2, MASK, x4, MASK, EOS, SOP, x5, x6, SOP, x3],
        "targets": [0, 0, 0, 0, 0, 0, 0, x5, x6, EOP, x3, EOP],
        "loss_weights": [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        "span_ids": [0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 1, 1],
    }


def test_rows_of_a_batch_are_independent():
    """Each row of a batch is built as if alone: spans index into their own row, rows without spans stay."""
    texts = ragged([[CLS, 20, 21], [CLS, 30, 31, 32, 33], [CLS, 40]])
    starts, lengths, order = ragged([[], [1, 3], [1]]), ragged([[], [1, 2], [1]]), ragged([[], [0, 1], [0]])
    out = {k: v.to_list() for k, v in infilling.assemble(texts, starts, lengths, order, MASK, SOP, EOP).items()}
    assert out["inputs"] == [[CLS, 20, 21], [CLS, MASK, 31, MASK, SOP, 30, SOP, 32, 33], [CLS, MASK, SOP, 40]]
    assert out["targets"] == [[0, 0, 0], [0, 0, 0, 0, 30, EOP, 32, 33, EOP], [0, 0, 40, EOP]]
    assert out["span_ids"] == [[0, 0, 0], [0, 0, 0, 0, 1, 1, 2, 2, 2], [0, 0, 1, 1]]
    assert out["loss_weights"] == [[0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1]]


def _sample(num: int, n: int, seq_len: int, seed: int = 7):
    """`num` examples over rows [CLS, 100, 101, ...] of n tokens, sampled as one batch."""
    cdf = tf.constant(span_lengths.span_length_cdf())
    texts = tf.RaggedTensor.from_tensor(
        tf.tile(tf.concat([[CLS], tf.range(100, 100 + n - 1)], 0)[None], [num, 1]), row_splits_dtype=tf.int32
    )
    budget = tf.fill([num], (seq_len - n) // 2)
    spans = span_sampling.sample_short_spans(tf.constant([seed, 0]), texts, EOS, budget, cdf)
    examples = examples_of(infilling.assemble(texts, *spans, MASK, SOP, EOP))
    starts, lengths, order = ([np.array(row, np.int32) for row in part.to_list()] for part in spans)
    return list(zip(starts, lengths, order, examples, strict=True))


@pytest.fixture(scope="module")
def samples():
    seq_len = 256
    n = span_lengths.text_length(seq_len)
    return n, seq_len, _sample(3000, n, seq_len)


def test_masked_fraction(samples):
    n, _, examples = samples
    fractions = np.array([lengths.sum() / n for _, lengths, _, _ in examples])
    assert fractions.min() >= 0.15
    assert 0.15 <= fractions.mean() <= 0.18


def test_span_lengths_fit_truncated_poisson(samples):
    _, _, examples = samples
    lengths = np.concatenate([lengths for _, lengths, _, _ in examples])
    assert lengths.min() >= 1 and lengths.max() <= 39
    expected_p = np.exp(span_lengths.span_length_log_pmf().astype(np.float64))
    expected_p /= expected_p.sum()
    # Pool the tail (lengths >= 8) so every expected count is large enough for the chi-square test.
    observed = np.bincount(lengths, minlength=40)[1:]
    obs = np.append(observed[:7], observed[7:].sum())
    exp = np.append(expected_p[:7], expected_p[7:].sum()) * len(lengths)
    assert scipy.stats.chisquare(obs, exp).pvalue > 0.001


def test_spans_are_separated_inside_the_row_and_fit(samples):
    n, seq_len, examples = samples
    for starts, lengths, order, example in examples:
        assert starts[0] >= 1 and starts[-1] + lengths[-1] <= n
        assert np.all(starts[1:] > starts[:-1] + lengths[:-1])  # at least one token between spans
        assert sorted(order.tolist()) == list(range(len(starts)))
        assert len(example["inputs"]) == n + 2 * len(starts) <= seq_len


def test_examples_reconstruct_their_row(samples):
    """Putting each Part B span back into its blank gives the original row exactly."""
    n, _, examples = samples
    row = [CLS] + list(range(100, 100 + n - 1))
    assert all(rebuild_row(ex, {MASK}, EOP) == row for _, _, _, ex in examples[:300])


def test_part_b_order_is_uniform():
    counts = collections.Counter()
    for starts, _, order, _ in _sample(12000, 60, 128):
        if len(starts) == 3:
            counts[tuple(order.tolist())] += 1
    total = sum(counts.values())
    assert total >= 2000
    for perm in itertools.permutations(range(3)):
        assert abs(counts[perm] / total - 1 / 6) <= 0.02


def test_same_seed_same_spans():
    a = _sample(20, 98, 128)
    b = _sample(20, 98, 128)
    for x, y in zip(a, b, strict=True):
        assert all(np.array_equal(u, v) for u, v in zip(x[:3], y[:3], strict=True))
    assert any(not np.array_equal(a[0][0], s[0]) for s in a[1:])


def test_text_length_leaves_room_for_part_b():
    lengths = {seq_len: span_lengths.text_length(seq_len) for seq_len in (64, 128, 512, 1024)}
    assert all(seq_len * 0.6 < n < seq_len for seq_len, n in lengths.items())
    assert lengths[512] > 0.8 * 512 and lengths[1024] > 0.8 * 1024
    with pytest.raises(ValueError, match="too short"):
        span_lengths.text_length(2)
