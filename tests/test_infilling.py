"""Blank infilling: exact outputs on the worked example, and statistics of the short-span sampler."""

import collections
import itertools

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from glm_jax.data import infilling, span_sampling

CLS, EOS, MASK, SOP, EOP = 3, 1, 5, 8, 9


def test_worked_example_exact():
    x1, x2, x3, x4, x5, x6 = 11, 12, 13, 14, 15, 16
    tokens = tf.constant([CLS, x1, x2, x3, x4, x5, x6, EOS])
    out = infilling.assemble(tokens, tf.constant([3, 5]), tf.constant([1, 2]), tf.constant([1, 0]), MASK, SOP, EOP)
    out = {k: v.numpy().tolist() for k, v in out.items()}
    assert out == {
        "inputs": [CLS, x1, x2, MASK, x4, MASK, EOS, SOP, x5, x6, SOP, x3],
        "targets": [0, 0, 0, 0, 0, 0, 0, x5, x6, EOP, x3, EOP],
        "loss_weights": [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        "span_ids": [0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 1, 1],
    }


def test_no_spans_leaves_text_unchanged():
    tokens = tf.constant([CLS, 20, 21])
    empty = tf.zeros([0], tf.int32)
    out = infilling.assemble(tokens, empty, empty, empty, MASK, SOP, EOP)
    assert out["inputs"].numpy().tolist() == [CLS, 20, 21]
    assert out["loss_weights"].numpy().sum() == 0


def _sample(num: int, n: int, seq_len: int):
    """`num` examples over rows [CLS, 100, 101, ...] of n tokens, sampled in one TF graph."""
    cdf = tf.constant(infilling.span_length_cdf())
    tokens = tf.concat([[CLS], tf.range(100, 100 + n - 1)], 0)

    def one(i):
        seed = tf.stack([tf.cast(i, tf.int32), 7])
        starts, lengths, order = span_sampling.sample_short_spans(seed, n, (seq_len - n) // 2, cdf)
        return starts, lengths, order, infilling.assemble(tokens, starts, lengths, order, MASK, SOP, EOP)

    return list(tf.data.Dataset.range(num).map(one).as_numpy_iterator())


@pytest.fixture(scope="module")
def samples():
    seq_len = 256
    n = infilling.text_length(seq_len)
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
    expected_p = np.exp(infilling.span_length_log_pmf().astype(np.float64))
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
    for _, _, _, ex in examples[:300]:
        part_a = ex["inputs"][ex["span_ids"] == 0].tolist()
        fills = collections.defaultdict(list)
        for target, span in zip(ex["targets"], ex["span_ids"], strict=True):
            if span and target != EOP:
                fills[span].append(int(target))
        text, blank = [], 0
        for token in part_a:
            if token == MASK:
                blank += 1
                text += fills[blank]
            else:
                text.append(token)
        assert text == row


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
    lengths = {seq_len: infilling.text_length(seq_len) for seq_len in (64, 128, 512, 1024)}
    assert all(seq_len * 0.6 < n < seq_len for seq_len, n in lengths.items())
    assert lengths[512] > 0.8 * 512 and lengths[1024] > 0.8 * 1024
    with pytest.raises(ValueError, match="too short"):
        infilling.text_length(2)
