"""SeqIO preprocessors of the pretraining tasks: documents → rows → blank-infilling examples."""

import seqio

from glm_jax.contract import CommandTokens
from glm_jax.data.host_tf import tf

# Documents longer than this many tokens are cut into pieces of it before being grouped by 64, so a
# group holds at most 4M tokens (a 5 MB one-line document, repeated, used to make groups of 64 copies).
PIECE_TOKENS = 1 << 16


def _row_lengths(total, full, short_seq_prob, seed):
    """Lengths of the rows cut from `total` tokens: `full`, or with `short_seq_prob` U{2..full}.

    They add up to `total` exactly (the last row takes what is left), so no token is dropped.
    """
    most = total // 2 + 1
    seeds = tf.random.experimental.stateless_split(seed, 2)
    short = tf.random.stateless_uniform([most], seeds[0]) < short_seq_prob
    shorter = tf.random.stateless_uniform([most], seeds[1], minval=2, maxval=full + 1, dtype=tf.int32)
    lengths = tf.where(short, tf.minimum(shorter, full), full)
    starts = tf.cumsum(lengths, exclusive=True)
    keep = starts < total
    return tf.minimum(tf.boolean_mask(lengths, keep), total - tf.boolean_mask(starts, keep))


def split_into_rows(
    dataset,
    sequence_length,
    *,
    objective,
    tokens: CommandTokens,
    add_cls: bool,
    short_seq_prob: float,
    concatenate=True,
):
    """Concatenates tokenized documents with `eos` and cuts them into rows of `objective`'s text length.

    Rows start with `[CLS]` if `add_cls`. Documents are joined in groups of 64 (or, without
    `concatenate`, each is cut on its own), a document longer than `PIECE_TOKENS` counting as one
    per piece of that length; the tail of each group becomes one shorter row, so no token is
    dropped. With probability `short_seq_prob` a row is shorter (U{2..full}), its remaining tokens
    starting the next row. Example, 5 tokens per row:

        {'targets': [a b c]}, {'targets': [d e f g]}  →  {'targets': [CLS a b c eos]},
                                                          {'targets': [CLS d e f g]}, {'targets': [CLS eos]}
    """
    row = objective.text_length(sequence_length["inputs"]) - int(add_cls)

    @seqio.map_over_dataset(num_seeds=1)
    @tf.autograph.experimental.do_not_convert  # plain TF ops, as below: nothing for autograph to rewrite
    def cut(documents, seed):
        flat = documents.flat_values
        return tf.RaggedTensor.from_row_lengths(flat, _row_lengths(tf.size(flat), row, short_seq_prob, seed))

    @tf.autograph.experimental.do_not_convert
    def pieces(example):
        document = tf.concat([example["targets"], [tokens.eos]], 0)
        starts = tf.range(0, tf.size(document), PIECE_TOKENS)
        return tf.RaggedTensor.from_row_lengths(document, tf.minimum(PIECE_TOKENS, tf.size(document) - starts))

    dataset = dataset.map(pieces, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    dataset = cut(dataset.ragged_batch(64 if concatenate else 1)).unbatch()
    prefix = tf.constant([tokens.cls] if add_cls else [], tf.int32)
    return dataset.map(lambda piece: {"targets": tf.concat([prefix, piece], 0)}, num_parallel_calls=tf.data.AUTOTUNE)


def blank_infilling(dataset, sequence_length, *, objective, info, task_mask: bool, rows_per_batch: int = 64):
    """Applies `objective` (objectives.py) to the rows, `rows_per_batch` at a time; an example longer
    than L is an error. Batching shares the transform's ops among rows (see `benchmarks/pipeline.py`).
    """
    seq_len = sequence_length["inputs"]

    @seqio.map_over_dataset(num_seeds=1)
    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for autograph to rewrite
    def corrupt(rows, seed):
        out = objective(rows["targets"], seed, seq_len, info, task_mask)
        longest = tf.reduce_max(out["inputs"].row_lengths())
        check = tf.debugging.assert_less_equal(longest, seq_len, message=f"example longer than seq_len={seq_len}")
        with tf.control_dependencies([check]):
            return {k: tf.identity(v) for k, v in out.items()}

    return corrupt(dataset.ragged_batch(rows_per_batch)).unbatch()
