"""Document- and sentence-level objectives and the recipe options: exact examples and statistics."""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from examples import examples_of, rebuild_row

from glm_jax.contract import CommandTokens
from glm_jax.data import infilling, span_sampling
from glm_jax.data.objectives import DocumentLevel, SentenceLevel, ShortSpans, VocabInfo

T = CommandTokens(pad=0, eos=1, unk=2, cls=3, sep=4, mask=5, smask=6, gmask=7, sop=8, eop=9, dblock=10)
PERIOD = 50  # the only sentence-ending token of the test vocabulary
INFO = VocabInfo(tokens=T, sentence_ends=np.arange(1000) == PERIOD)


def _lists(example):
    """The first row of a batch of ragged fields, as lists."""
    return {k: v.to_list()[0] for k, v in example.items()}


def _one(text):
    """A batch of the one row `text`."""
    return tf.RaggedTensor.from_tensor(text[None], row_splits_dtype=tf.int32)


def test_document_suffix_layout_exact():
    # [CLS] a b c d e f g h, span e f g h as the suffix: text [gMASK] | sop continuation.
    text = tf.constant([T.cls, 11, 12, 13, 14, 15, 16, 17, 18])
    spans = [_one(tf.constant([value])) for value in (5, 4, 0)]
    out = _lists(infilling.assemble(_one(text), *spans, T.gmask, T.sop, T.eop))
    assert out == {
        "inputs": [T.cls, 11, 12, 13, 14, T.gmask, T.sop, 15, 16, 17, 18],
        "targets": [0, 0, 0, 0, 0, 0, 15, 16, 17, 18, T.eop],
        "loss_weights": [0] * 6 + [1] * 5,
        "span_ids": [0] * 6 + [1] * 5,
    }


def test_sentences_are_found_whole_eos_excluded():
    # [CLS] a b . c . eos d e : sentences (1,3) "a b ." (4,2) "c ." and (7,2) "d e"; eos belongs to none.
    text = tf.constant([T.cls, 11, 12, PERIOD, 13, PERIOD, T.eos, 14, 15])
    for seed in range(20):
        starts, lengths, order = span_sampling.sample_sentences(
            tf.constant([seed, 0]), _one(text), tf.constant(INFO.sentence_ends), T.eos, max_spans=[8], ratio=0.15
        )
        spans = set(zip(starts.to_list()[0], lengths.to_list()[0], strict=True))
        assert spans <= {(1, 3), (4, 2), (7, 2)}
        assert sum(length for _, length in spans) >= 0.15 * 9
        assert len(spans) == 1 or sum(sorted(length for _, length in spans)[:-1]) < 0.15 * 9


def test_sentence_objective_exact_with_task_mask():
    text = tf.constant([T.cls, 11, 12, PERIOD, 13, PERIOD, 14, 15, 16, 17, 18, 19, 20, 21])
    out = _lists(SentenceLevel(ratio=0.1)(text[None], tf.constant([3, 4]), 32, INFO, task_mask=True))
    # One sentence covers ≥ 10% of 14 tokens; whichever was drawn sits behind [sMASK] whole.
    part_a = [t for t, s in zip(out["inputs"], out["span_ids"], strict=True) if s == 0]
    filled = [t for t, s in zip(out["targets"], out["span_ids"], strict=True) if s == 1]
    assert part_a.count(T.smask) == 1 and T.mask not in part_a
    i = part_a.index(T.smask)
    assert part_a[:i] + filled[:-1] + part_a[i + 1 :] == text.numpy().tolist() and filled[-1] == T.eop
    assert filled[:-1] in ([11, 12, PERIOD], [13, PERIOD], [14, 15, 16, 17, 18, 19, 20, 21])


def _many(objective, num, text_len, seq_len, task_mask=False, several_documents=False):
    body = tf.range(20, 20 + text_len - 1)
    if several_documents:
        body = tf.tensor_scatter_nd_update(body, [[text_len // 3]], [T.eos])
    text = tf.concat([[T.cls], body], 0)
    return examples_of(objective(tf.tile(text[None], [num, 1]), tf.constant([11, 0]), seq_len, INFO, task_mask))


def test_document_generation_fraction_is_uniform():
    text_len, min_ratio = 510, 0.25
    examples = _many(DocumentLevel(min_ratio=min_ratio, infill_prob=0.5), 2500, text_len, 512, task_mask=True)
    fractions = np.array([(ex["span_ids"] > 0).sum() - 1 for ex in examples]) / (text_len - 1)
    assert fractions.min() >= min_ratio and fractions.max() <= 1.0
    assert scipy.stats.kstest(fractions, scipy.stats.uniform(min_ratio, 1 - min_ratio).cdf).pvalue > 0.001
    suffix = np.mean([ex["inputs"][(ex["span_ids"] == 0)][-1] == T.gmask for ex in examples])
    assert 0.45 < suffix < 0.6  # infill_prob .5, plus the infills that happen to end the row


def test_rows_with_several_documents_always_use_the_suffix():
    examples = _many(DocumentLevel(infill_prob=1.0), 200, 100, 128, several_documents=True)
    assert all(ex["inputs"][ex["span_ids"] == 0][-1] == T.mask for ex in examples)


def test_sentence_spans_are_whole_sentences_covering_the_ratio():
    # Sentences of varied length ending in PERIOD, built deterministically.
    rng = np.random.default_rng(0)
    body = []
    while len(body) < 300:
        body += list(rng.integers(20, 40, rng.integers(3, 25))) + [PERIOD]
    text = tf.constant([T.cls] + body[:299], tf.int32)
    row = text.numpy()
    sentence_of = np.cumsum(np.r_[0, (row == PERIOD)[:-1]])
    examples = examples_of(SentenceLevel()(tf.tile(text[None], [2000, 1]), tf.constant([5, 0]), 512, INFO, False))
    for ex in examples:
        masked = 0
        for s in set(ex["span_ids"].tolist()) - {0}:
            span = ex["targets"][ex["span_ids"] == s][:-1]
            ids = sentence_of[np.flatnonzero(row == span[0])]
            # The span is exactly one whole sentence of the row.
            assert any(np.array_equal(row[sentence_of == i][row[sentence_of == i] != T.cls], span) for i in ids)
            masked += len(span)
        assert masked >= 0.15 * len(row)


def test_block_mask_replaces_part_b_inputs_only():
    examples = _many(ShortSpans(block_mask_prob=0.3), 300, 120, 128)  # same seed: same spans as `plain`
    plain = _many(ShortSpans(), 300, 120, 128)
    hits, total = 0, 0
    for ex, ref in zip(examples, plain, strict=True):
        part_b = (ex["span_ids"] > 0) & (ref["inputs"] != T.sop)
        np.testing.assert_array_equal(ex["targets"], ref["targets"])
        np.testing.assert_array_equal(ex["inputs"][~part_b], ref["inputs"][~part_b])
        changed = ex["inputs"][part_b] != ref["inputs"][part_b]
        assert np.all(ex["inputs"][part_b][changed] == T.dblock)
        hits, total = hits + changed.sum(), total + part_b.sum()
    assert abs(hits / total - 0.3) < 0.03


@pytest.mark.parametrize("objective", [ShortSpans(), DocumentLevel(), SentenceLevel()])
def test_examples_fit_their_sequence_length(objective):
    for seq_len in (64, 512):
        n = objective.text_length(seq_len)
        assert all(len(ex["inputs"]) <= seq_len for ex in _many(objective, 200, n, seq_len))


@pytest.mark.parametrize("objective", [ShortSpans(), DocumentLevel(), SentenceLevel()])
def test_each_row_of_a_ragged_batch_rebuilds_itself(objective):
    """Rows of many lengths (some holding eos, some [CLS] alone) built in one batch stay separate."""
    rng = np.random.default_rng(1)
    lengths = [1, 2, *rng.integers(3, 120, 60)]
    pool = np.array([20, 21, 22, 23, PERIOD, T.eos])
    rows = [[T.cls] + rng.choice(pool, n - 1, p=[0.2, 0.2, 0.2, 0.2, 0.15, 0.05]).tolist() for n in lengths]
    batch = objective(tf.ragged.constant(rows, tf.int32), tf.constant([1, 2]), 128, INFO, task_mask=True)
    examples = examples_of(batch)
    assert [rebuild_row(ex, {T.mask, T.smask, T.gmask}, T.eop) for ex in examples] == rows
    assert sum(ex["loss_weights"].sum() > 0 for ex in examples) >= len(rows) - 3
