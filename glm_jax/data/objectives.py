"""GLM's pretraining objectives (paper §2.1, official code), each a transform of rows of text.

An objective knows how many text tokens a row of `seq_len` positions holds (`text_length`) and
turns a batch of such rows (`[R, (n)]` ragged) into examples of the data contract (`__call__`,
stateless TF ops; each field `[R, (n + 2k)]` ragged). Worked example, row `[CLS] a b c d e f g h`
(n = 9):

    ShortSpans      [CLS] a [M] d e [M] h | sop b c | sop f g        (spans b c, f g)
    DocumentLevel   [CLS] a b c d [gM]    | sop e f g h              (suffix layout)
    SentenceLevel   [CLS] a b c . [sM]    | sop e f g .              (sentences "a b c ." "e f g .")
"""

import dataclasses

import numpy as np

from glm_jax.contract import CommandTokens
from glm_jax.data import infilling, span_lengths, span_sampling
from glm_jax.data.host_tf import tf


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """What the objectives need to know of a vocabulary."""

    tokens: CommandTokens
    sentence_ends: np.ndarray  # [vocab] bool: the token ends a sentence


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
    """

    ratio: float = 0.15
    mean_span: float = 3.0
    block_mask_prob: float = 0.0

    def text_length(self, seq_len: int) -> int:
        return span_lengths.text_length(seq_len, self.ratio, self.mean_span)

    def __call__(self, texts, seed, seq_len: int, info: VocabInfo, task_mask: bool):
        t = info.tokens
        texts, n = _rows(texts)
        cdf = tf.constant(span_lengths.span_length_cdf(self.mean_span))
        spans = span_sampling.sample_short_spans(seed, texts, t.eos, (seq_len - n) // 2, cdf, self.ratio)
        example = infilling.assemble(texts, *spans, t.mask, t.sop, t.eop)
        if self.block_mask_prob > 0.0:
            mask_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            example = infilling.block_mask(example, mask_seed, self.block_mask_prob, t.sop, t.dblock)
        return example


@dataclasses.dataclass(frozen=True)
class DocumentLevel:
    """One span of U[`min_ratio`, 100%] of the text ([gMASK] with task mask tokens, else [MASK]).

    With probability `infill_prob` the span is placed anywhere in the text but a final eos;
    otherwise, and always when the row holds several documents, it is the suffix: `text [gMASK] |
    sop continuation` (which, as in the official code, may run over eos tokens).
    """

    min_ratio: float = 0.5
    infill_prob: float = 0.5

    def text_length(self, seq_len: int) -> int:
        return seq_len - 2  # one blank marker in Part A and one sop in Part B

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
    """Whole sentences covering >= `ratio` of the row ([sMASK] with task mask tokens, else [MASK])."""

    ratio: float = 0.15

    def text_length(self, seq_len: int) -> int:
        return span_lengths.text_length(seq_len, self.ratio)

    def __call__(self, texts, seed, seq_len: int, info: VocabInfo, task_mask: bool):
        t = info.tokens
        texts, n = _rows(texts)
        ends = tf.constant(info.sentence_ends)
        spans = span_sampling.sample_sentences(seed, texts, ends, t.eos, (seq_len - n) // 2, self.ratio)
        return infilling.assemble(texts, *spans, t.smask if task_mask else t.mask, t.sop, t.eop)
