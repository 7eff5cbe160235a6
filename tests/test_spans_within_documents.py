"""Rows holding several documents: no span of the infilling objectives covers a document's eos.

The official collator (THUDM/GLM `blocklm_utils.py`, `ConstructBlockStrategy.sample_span_in_document`
and the check in `make_block_data`) places every blank inside one document; only the suffix of the
document-level objective may run over eos tokens.
"""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from examples import examples_of, rebuild_row

from glm_jax.contract import CommandTokens
from glm_jax.data import span_lengths, span_sampling
from glm_jax.data.objectives import DocumentLevel, SentenceLevel, ShortSpans, VocabInfo

T = CommandTokens(pad=0, eos=1, unk=2, cls=3, sep=4, mask=5, smask=6, gmask=7, sop=8, eop=9, dblock=10)
INFO = VocabInfo(tokens=T, sentence_ends=np.arange(1000) == 50)
MARKERS = {T.mask, T.smask, T.gmask}
CDF = tf.constant(span_lengths.span_length_cdf())


def _rows_of_documents(seed, count, longest):
    """`count` rows of 1..`longest` tokens: [CLS], then documents of 0-3 or more tokens, each ending
    with eos, the last one cut anywhere (about a third of the rows end with an eos)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        n = int(rng.integers(1, longest + 1))
        row = [T.cls]
        while len(row) < n:
            size = int(rng.choice([0, 1, 2, 3, rng.integers(4, 30), rng.integers(30, 200)]))
            row += rng.integers(11, 1000, size).tolist() + [T.eos]
        row = row[:n]
        if n > 1 and rng.random() < 0.3:
            row[-1] = T.eos
        rows.append(row)
    return rows


def _ragged(rows):
    return tf.ragged.constant(rows, tf.int32, row_splits_dtype=tf.int32)


def _documents(row, first=1):
    """(start, size) of each maximal run of positions >= first holding no eos: a plain reference."""
    documents, start = [], None
    for i, token in enumerate([*row, T.eos]):
        if i >= first and token != T.eos and start is None:
            start = i
        elif (token == T.eos or i == len(row)) and start is not None:
            documents.append((start, i - start))
            start = None
    return documents


def _short_spans(rows, seed, seq_len):
    n = np.array([len(row) for row in rows], np.int32)
    max_spans = tf.constant((seq_len - n) // 2)
    spans = span_sampling.sample_short_spans(tf.constant([seed, 0]), _ragged(rows), T.eos, max_spans, CDF)
    return [[np.array(row, np.int32) for row in part.to_list()] for part in spans], (seq_len - n) // 2


def test_documents_are_the_runs_between_eos():
    rows = _rows_of_documents(0, 300, 120) + [[T.cls], [T.cls, T.eos], [T.eos, 11, T.eos, T.eos, 12], [T.cls, 11]]
    doc_row, start, size = (x.numpy() for x in span_sampling._documents(_ragged(rows), T.eos, 1))
    found = [[(s, z) for r, s, z in zip(doc_row, start, size, strict=True) if r == i] for i in range(len(rows))]
    assert found == [_documents(row) for row in rows]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_short_spans_never_cover_an_eos(seed):
    seq_len = 256
    rows = _rows_of_documents(seed, 400, span_lengths.text_length(seq_len))
    (starts, lengths, order), max_spans = _short_spans(rows, seed, seq_len)
    for row, s, length, o, most in zip(rows, starts, lengths, order, max_spans, strict=True):
        row = np.array(row)
        assert len(s) <= most and sorted(o.tolist()) == list(range(len(s)))
        assert np.all(s[1:] > s[:-1] + length[:-1])  # in text order, at least one token between spans
        for start, span in zip(s, length, strict=True):
            assert span >= 1 and start >= 1 and start + span <= len(row)
            assert T.eos not in row[start : start + span]
    # End to end: the same spans become examples whose Part B holds no eos and that rebuild their row.
    batch = ShortSpans()(_ragged(rows), tf.constant([seed, 0]), seq_len, INFO, task_mask=False)
    examples = examples_of(batch)
    for row, ex, length in zip(rows, examples, lengths, strict=True):
        assert T.eos not in ex["targets"][ex["span_ids"] > 0]
        assert ex["loss_weights"].sum() == length.sum() + len(length)  # each span and its eop
        assert rebuild_row(ex, MARKERS, T.eop) == row
        assert len(ex["inputs"]) <= seq_len


def test_short_span_statistics_on_rows_of_several_documents():
    """Rows of 2-4 documents: ≥ 15% masked, lengths still truncated Poisson, every document but the
    longest masked at most floor(15% of its size), spans spread over the whole of each document."""
    seq_len = 256
    n = span_lengths.text_length(seq_len)
    rng = np.random.default_rng(5)
    rows = np.arange(100, 100 + n)[None].repeat(3000, 0)
    rows[:, 0] = T.cls
    for row in rows:
        row[rng.choice(np.arange(2, n), rng.integers(1, 4), replace=False)] = T.eos
    (starts, lengths, _), _ = _short_spans(rows.tolist(), 9, seq_len)
    fractions = np.array([length.sum() / n for length in lengths])
    assert fractions.min() >= 0.15 and 0.15 <= fractions.mean() <= 0.18
    drawn = np.concatenate(lengths)
    expected = np.exp(span_lengths.span_length_log_pmf().astype(np.float64))
    expected /= expected.sum()
    observed = np.bincount(drawn, minlength=40)[1:]
    obs = np.append(observed[:7], observed[7:].sum())
    exp = np.append(expected[:7], expected[7:].sum()) * len(drawn)
    assert scipy.stats.chisquare(obs, exp).pvalue > 0.001
    relative = []  # where spans start inside their document, as a fraction of its size
    for row, s, length in zip(rows, starts, lengths, strict=True):
        documents = _documents(row)
        masked = [sum(z for a, z in zip(s, length, strict=True) if d <= a < d + size) for d, size in documents]
        longest = max(range(len(documents)), key=lambda i: (documents[i][1], -i))
        shares = [int(0.15 * size) for _, size in documents]
        assert all(m <= share for i, (m, share) in enumerate(zip(masked, shares, strict=True)) if i != longest)
        for a in s:
            d, size = next((d, size) for d, size in documents if d <= a < d + size)
            relative.append((a - d) / size)
    assert np.histogram(relative, bins=5, range=(0, 1))[0].min() > 0.12 * len(relative)


def test_rows_without_room_for_a_span_stay_whole():
    """Rows without a document get no span; documents of 1-3 tokens take only the spans that fit."""
    empty = [[T.cls], [T.cls, T.eos], [T.cls, T.eos, T.eos, T.eos], [T.cls] + [T.eos] * 60]
    tiny = [[T.cls] + [11, T.eos] * 30, [T.cls, 11, 12, T.eos, 13, T.eos, 14, 15, 16, T.eos, 17]]
    for seed in range(20):
        (starts, lengths, _), _ = _short_spans(empty + tiny, seed, 128)
        assert all(len(s) == 0 for s in starts[: len(empty)])
        for row, s, length in zip(tiny, starts[len(empty) :], lengths[len(empty) :], strict=True):
            assert all(T.eos not in row[a : a + z] and a >= 1 for a, z in zip(s, length, strict=True))
        batch = ShortSpans()(_ragged(empty + tiny), tf.constant([seed, 1]), 128, INFO, task_mask=False)
        for row, ex in zip(empty, examples_of(batch), strict=False):
            assert ex["inputs"].tolist() == row and ex["loss_weights"].sum() == 0
    spans = [len(s) for seed in range(20) for s in _short_spans(tiny, seed, 128)[0][0]]
    assert sum(spans) > 0  # a draw of 1 fits a document of one token
    (starts, _, _), _ = _short_spans(empty, 0, 128)  # a batch without any document
    assert all(len(s) == 0 for s in starts)


def _document_spans(rows, infill_prob, seed=0):
    batch = DocumentLevel(infill_prob=infill_prob)(_ragged(rows), tf.constant([seed, 0]), 600, INFO, task_mask=True)
    return examples_of(batch)


def test_document_infill_never_covers_the_final_eos():
    rng = np.random.default_rng(3)
    rows = [[T.cls] + rng.integers(11, 1000, int(rng.integers(1, 300))).tolist() + [T.eos] for _ in range(600)]
    rows += [[T.cls, T.eos], [T.cls, 11, T.eos]]
    fractions = []
    for row, ex in zip(rows, _document_spans(rows, infill_prob=1.0), strict=True):
        span = ex["targets"][ex["span_ids"] > 0][:-1]
        assert rebuild_row(ex, MARKERS, T.eop) == row
        if len(row) == 2:  # a lone eos: the suffix is all there is
            assert span.tolist() == [T.eos]
            continue
        assert T.eos not in span and ex["inputs"][ex["span_ids"] == 0][-1] == T.eos
        fractions.append(len(span) / (len(row) - 2))
    assert min(fractions) >= 0.5 and max(fractions) <= 1.0
    # The suffix layout ends with the row, its eos included, as in the official code.
    for ex in _document_spans(rows, infill_prob=0.0):
        assert ex["targets"][ex["span_ids"] > 0][-2] == T.eos and ex["inputs"][ex["span_ids"] == 0][-1] == T.gmask


def test_document_suffix_may_cross_documents_but_infill_stays_off_eos():
    rows = _rows_of_documents(4, 500, 300)
    for row, ex in zip(rows, _document_spans(rows, infill_prob=1.0, seed=2), strict=True):
        assert rebuild_row(ex, MARKERS, T.eop) == row
        span = ex["targets"][ex["span_ids"] > 0][:-1]
        suffix = ex["inputs"][ex["span_ids"] == 0][-1] == T.gmask
        if T.eos in row[:-1] or row[1:] == [T.eos]:
            assert suffix  # several documents (or a lone eos): always the suffix
        elif not suffix:
            assert T.eos not in span


def test_sentences_never_cover_an_eos():
    rows = _rows_of_documents(6, 400, span_lengths.text_length(256))
    for seed in range(3):
        batch = SentenceLevel()(_ragged(rows), tf.constant([seed, 0]), 256, INFO, task_mask=True)
        for row, ex in zip(rows, examples_of(batch), strict=True):
            assert T.eos not in ex["targets"][ex["span_ids"] > 0]
            assert rebuild_row(ex, MARKERS, T.eop) == row
