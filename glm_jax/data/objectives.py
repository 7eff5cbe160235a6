"""GLM's pretraining objectives (paper §2.1, official code), each a transform of rows of text.

An objective knows how many text tokens a row of `seq_len` positions holds (`text_length`) and
turns a batch of such rows (`[R, (n)]` ragged) into examples of the data contract (`__call__`,
stateless TF ops; each field `[R, (n + 2k)]` ragged). Worked example, row `[CLS] a b c d e f g h`
(n = 9):

    ShortSpans      [CLS] a [M] d e [M] h | sop b c | sop f g        (spans b c, f g)
    DocumentLevel   [CLS] a b c d [gM]    | sop e f g h              (suffix layout)
    SentenceLevel   [CLS] a b c . [sM]    | sop e f g .              (sentences "a b c ." "e f g .")

and the variants and baselines of the paper's comparisons (the official switches in brackets):

    ShortSpans(shuffle=False)   Part B spans in text order              [--no-shuffle-block]
    ShortSpans(sentinels=True)  [CLS] a [M1] d e [M] h | sop1 b c | sop f g  (f g first in Part B)
                                                                         [--sentinel-token]
    MaskedLM                    [CLS] a [M] [M] d e [M] [M] h, targets in place      [--masked-lm]
    LeftToRight                 inputs [CLS] a b ... g, targets a b ... h  (GPT)

An objective also says which model scheme it needs (`causal`, `sentinels`; the model's
`layout.Scheme`) and the most positions a row of it scores (`max_scored`).
"""

import dataclasses
from typing import ClassVar

import numpy as np

from glm_jax.contract import CommandTokens, sentinel_tokens
from glm_jax.data import infilling, span_lengths, span_sampling
from glm_jax.data.host_tf import tf


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """What the objectives need to know of a vocabulary."""

    tokens: CommandTokens
    sentence_ends: np.ndarray  # [vocab] bool: the token ends a sentence
    vocab_size: int = 0  # the vocabulary's ids; sentinel tokens come after them


def _text_order(order):
    """The identity permutation in the shape of `order` (`[R, (k)]`): Part B spans in text order."""
    return tf.ragged.range(order.row_lengths(), dtype=tf.int32, row_splits_dtype=order.row_splits.dtype)


def _sentinels(order, first: int, table_size: int, info: VocabInfo):
    """Per span (flat, text order) the id of pair i of `sentinel_tokens` (`first` 0: [MASK{i}], 1:
    sop{i}), i the span's place in Part B; pair 0 is [MASK] / sop themselves."""
    pair_0 = (info.tokens.mask, info.tokens.sop)[first]
    table = np.array([pair_0] + [sentinel_tokens(info.vocab_size, i)[first] for i in range(1, table_size)], np.int32)
    starts = tf.gather(order.row_starts(), order.value_rowids())
    flat = order.flat_values + starts
    rank = tf.scatter_nd(flat[:, None], tf.range(tf.size(flat)) - starts, tf.shape(flat))
    return tf.gather(table, rank)


def _rows(texts):
    """`texts` (ragged, or dense rows of one length) as ragged with int32 row splits, and each row's length."""
    if isinstance(texts, tf.RaggedTensor):
        texts = texts.with_row_splits_dtype(tf.int32)
    else:
        texts = tf.RaggedTensor.from_tensor(texts, row_splits_dtype=tf.int32)
    return texts, texts.row_lengths()


@dataclasses.dataclass(frozen=True)
class ShortSpans:
    """Short spans (NLU): Poisson(`mean_span`) lengths in 1..39 covering >= `ratio`, one [MASK] each.

    Every span lies inside one document of the row: none covers an eos.

    `block_mask_prob`: each Part B input but `sop` becomes [dBLOCK] with this probability.
    `shuffle`: Part B spans in a random order (GLM), else in text order (official --no-shuffle-block).
    `sentinels`: the span i-th in Part B is [MASK{i}] in Part A and opens with sop{i} (i = 0: [MASK]
    and sop), ids from `contract.sentinel_tokens`; the model numbers Part B at one sentinel
    position (official --sentinel-token; `model.sentinel_positions`).
    """

    ratio: float = 0.15
    mean_span: float = 3.0
    block_mask_prob: float = 0.0
    shuffle: bool = True
    sentinels: bool = False
    causal: ClassVar[bool] = False
    scored: ClassVar[str] = "Part B targets"  # what the loss is over, for messages

    def text_length(self, seq_len: int) -> int:
        return span_lengths.text_length(seq_len, self.ratio, self.mean_span)

    def max_scored(self, seq_len: int) -> int:
        return span_lengths.short_spans_max_scored(seq_len, self.ratio, self.mean_span)

    def __call__(self, texts, seed, seq_len: int, info: VocabInfo, task_mask: bool):
        t = info.tokens
        texts, n = _rows(texts)
        cdf = tf.constant(span_lengths.span_length_cdf(self.mean_span))
        starts, lengths, order = span_sampling.sample_short_spans(
            seed, texts, t.eos, (seq_len - n) // 2, cdf, self.ratio
        )
        order = order if self.shuffle else _text_order(order)
        marker, sop = t.mask, t.sop
        if self.sentinels:
            marker, sop = (_sentinels(order, first, seq_len // 2 + 1, info) for first in (0, 1))
        example = infilling.assemble(texts, starts, lengths, order, marker, sop, t.eop)
        if self.block_mask_prob > 0.0:
            mask_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            example = infilling.block_mask(example, mask_seed, self.block_mask_prob, t.dblock)
        return example


@dataclasses.dataclass(frozen=True)
class MaskedLM:
    """A masked LM (BERT, the official --masked-lm): short spans drawn as `ShortSpans` draws them,
    every token of a span replaced by [MASK] in place and predicted there, the whole row Part A
    (each token sees all of it). Run it on a model without block positions (`model.block_positions
    = "none"`, as the official BERT baseline)."""

    ratio: float = 0.15
    mean_span: float = 3.0
    causal: ClassVar[bool] = False
    sentinels: ClassVar[bool] = False
    scored: ClassVar[str] = "masked tokens"

    def text_length(self, seq_len: int) -> int:
        return seq_len

    def max_scored(self, seq_len: int) -> int:
        return span_lengths.masked_lm_max_scored(seq_len, self.ratio)

    def __call__(self, texts, seed, seq_len: int, info: VocabInfo, task_mask: bool):
        t = info.tokens
        texts, n = _rows(texts)
        cdf = tf.constant(span_lengths.span_length_cdf(self.mean_span))
        most = tf.cast(tf.math.ceil(self.ratio * tf.cast(n, tf.float32)), tf.int32) + 1
        starts, lengths, _ = span_sampling.sample_short_spans(seed, texts, t.eos, most, cdf, self.ratio)
        return infilling.mask_in_place(texts, starts, lengths, t.mask)


@dataclasses.dataclass(frozen=True)
class LeftToRight:
    """A left-to-right LM (GPT): each token of the row predicts the next, the whole row causal
    (`model.causal`). A row of `seq_len + 1` tokens gives inputs `x[:-1]`, targets `x[1:]`, all
    weighted; rows are best cut without [CLS] (`register_pretraining_task(add_cls=False)`)."""

    causal: ClassVar[bool] = True
    sentinels: ClassVar[bool] = False
    scored: ClassVar[str] = "next tokens"

    def text_length(self, seq_len: int) -> int:
        return seq_len + 1

    def max_scored(self, seq_len: int) -> int:
        return seq_len

    def __call__(self, texts, seed, seq_len: int, info: VocabInfo, task_mask: bool):
        texts, _ = _rows(texts)
        inputs, targets = texts[:, :-1], texts[:, 1:]
        return {
            "inputs": inputs,
            "targets": targets,
            "loss_weights": tf.ones_like(targets),
            "span_ids": tf.zeros_like(inputs),
        }


@dataclasses.dataclass(frozen=True)
class DocumentLevel:
    """One span of U[`min_ratio`, 100%] of the text ([gMASK] with task mask tokens, else [MASK]).

    With probability `infill_prob` the span is placed anywhere in the text but a final eos;
    otherwise, and always when the row holds several documents, it is the suffix: `text [gMASK] |
    sop continuation` (which, as in the official code, may run over eos tokens).
    """

    min_ratio: float = 0.5
    infill_prob: float = 0.5
    causal: ClassVar[bool] = False
    sentinels: ClassVar[bool] = False
    scored: ClassVar[str] = "Part B targets"

    def text_length(self, seq_len: int) -> int:
        return seq_len - 2  # one blank marker in Part A and one sop in Part B

    def max_scored(self, seq_len: int) -> int:
        return seq_len

    def __call__(self, texts, seed, seq_len: int, info: VocabInfo, task_mask: bool):
        t = info.tokens
        texts, n = _rows(texts)
        several_documents = tf.reduce_any(texts[:, :-1] == t.eos, axis=1)
        last = tf.gather(tf.pad(texts.flat_values, [[1, 0]], constant_values=-1), texts.row_limits())
        ends_with_eos = tf.logical_and(n > 0, last == t.eos)
        spans = span_sampling.sample_document_span(
            seed, n, self.min_ratio, self.infill_prob, several_documents, ends_with_eos
        )
        return infilling.assemble(texts, *spans, t.gmask if task_mask else t.mask, t.sop, t.eop)


@dataclasses.dataclass(frozen=True)
class SentenceLevel:
    """Whole sentences covering >= `ratio` of the row ([sMASK] with task mask tokens, else [MASK]);
    in Part B in a random order, or with `shuffle=False` in text order (official --no-shuffle-block)."""

    ratio: float = 0.15
    shuffle: bool = True
    causal: ClassVar[bool] = False
    sentinels: ClassVar[bool] = False
    scored: ClassVar[str] = "Part B targets"

    def text_length(self, seq_len: int) -> int:
        return span_lengths.text_length(seq_len, self.ratio)

    def max_scored(self, seq_len: int) -> int:
        return seq_len

    def __call__(self, texts, seed, seq_len: int, info: VocabInfo, task_mask: bool):
        t = info.tokens
        texts, n = _rows(texts)
        ends = tf.constant(info.sentence_ends)
        most = (seq_len - n) // 2
        starts, lengths, order = span_sampling.sample_sentences(seed, texts, ends, t.eos, most, self.ratio)
        order = order if self.shuffle else _text_order(order)
        return infilling.assemble(texts, starts, lengths, order, t.smask if task_mask else t.mask, t.sop, t.eop)
