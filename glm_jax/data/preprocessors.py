"""SeqIO preprocessors of the pretraining tasks: raw text → rows → blank-infilling examples."""

import seqio
import tensorflow as tf

from glm_jax.data import infilling
from glm_jax.data.command_tokens import CommandTokens

_DOCS_PER_GROUP = 64


def split_into_rows(dataset, sequence_length, *, tokens: CommandTokens, ratio: float, mean_span: float):
    """Concatenates tokenized documents with `eos` and cuts them into rows that start with `[CLS]`.

    Each row holds `infilling.text_length(L)` tokens (L = `sequence_length['inputs']`), so that the
    example built from it fits L. Documents are concatenated in groups of 64; the tail of each
    group becomes one shorter row, so no token is dropped. Example, 5 text tokens per row:

        {'targets': [a b c]}, {'targets': [d e f g]}  →  {'targets': [CLS a b c eos]},
                                                          {'targets': [CLS d e f g]}, {'targets': [CLS eos]}
    """
    row = infilling.text_length(sequence_length["inputs"], ratio, mean_span) - 1  # without [CLS]

    def cut(documents):
        flat = documents.flat_values
        starts = tf.range(0, tf.size(flat), row)
        pieces = tf.RaggedTensor.from_row_lengths(flat, tf.minimum(row, tf.size(flat) - starts))
        return tf.data.Dataset.from_tensor_slices(pieces)

    dataset = dataset.map(lambda ex: tf.concat([ex["targets"], [tokens.eos]], 0))
    dataset = dataset.ragged_batch(_DOCS_PER_GROUP).flat_map(cut)
    return dataset.map(lambda piece: {"targets": tf.concat([[tokens.cls], piece], 0)})


def short_span_infilling(dataset, sequence_length, *, tokens: CommandTokens, ratio: float, mean_span: float):
    """Short-span blank infilling (paper §2.1) of each row; see `infilling` for the layout."""
    log_pmf = tf.constant(infilling.span_length_log_pmf(mean_span))
    seq_len = sequence_length["inputs"]

    @seqio.map_over_dataset(num_seeds=1)
    def corrupt(example, seed):
        text = example["targets"]
        n = tf.shape(text)[0]
        starts, lengths, order = infilling.sample_short_spans(seed, n, (seq_len - n) // 2, log_pmf, ratio)
        return infilling.assemble(text, starts, lengths, order, tokens.mask, tokens.sop, tokens.eop)

    return corrupt(dataset)
