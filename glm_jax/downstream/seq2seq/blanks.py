"""Text infilling (paper Table 5): the official `BlankLMDataset` layout as TF ops, its SeqIO task, and the
filled text that evaluation scores.

The official `tasks/seq2seq/dataset.py` (`BlankLMDataset.mask_text`, `__getitem__`) blanks `int(n * ratio)` of a
text's n whitespace-separated words, a uniformly random subset. Each run of consecutive blanked words is one
`[MASK]` in Part A and one span of Part B, the spans in text order. With words 1, 2 and 4 (from 0) of
"the cat sat on the mat" blanked (ratio 0.5):

    Part A     the [MASK] on [MASK] mat
    inputs     the [MASK] on [MASK] mat  sop cat sat sop the
    targets    0   0      0  0      0    cat sat eop the eop
    span_ids   0   0      0  0      0    1   1   1   2   2

Part A holds no `[CLS]` and no `eos`, as the official. Each run of words is encoded on its own: a run of kept words
where it stands in Part A, a run of blanked words as its span (for WordPiece exactly the official encoding of the
text around and in the blanks; a vocabulary that marks word starts by a leading space, GPT-2's, gets the run
after a space, one whose pieces carry their own marker, SentencePiece's, without one). Part A is cut to
`source_len` tokens, the blanks past the cut dropped with their spans; Part B is cut to `target_len` tokens (a
cut span loses its `eop`), both as the official (whose Part B room is `int(source_len * ratio)`). A text left
without a blank (fewer than `1 / ratio` words, or every blank past the cut) is dropped: it has nothing to fill.

Examples hold the seq2seq fields (`layout.FIELDS`): `part_a` is the prompt of decoding and `reference` the text
with its words joined by single spaces. Evaluation fills every blank in order (`decoding.Decoder`), puts the fills
into Part A (`filled_text`) and scores the whole text against `reference` with BLEU, as the official
`BlankLMEvaluater` writes its hypotheses.
"""

import functools

import numpy as np
import seqio
import tensorflow as tf

from glm_jax.contract import CommandTokens
from glm_jax.data import tasks, vocab
from glm_jax.downstream.seq2seq import layout

# Evaluation blanks come from this seed (`Seq2SeqKind`): the same validation blanks in every run and evaluation.
EVAL_SEED = 0
# The tasks registered by `register_blank_task`: their evaluation scores the filled text.
BLANK_TASKS: set[str] = set()

# The official `blanklm_fix_tokenization`: a WordPiece decoding's spaced contractions and abbreviations joined
# again, as in the pre-tokenized Yahoo Answers references. Applied in order.
_JOINS = (
    ("` `", "``"),
    ("' '", "''"),
    ("n ' t", "n't"),
    ("' s", "'s"),
    ("' m", "'m"),
    ("' re", "'re"),
    (". . .", "..."),
    (" . .", " .."),
    ("- -", "--"),
    ("u . s .", "u.s."),
    ("u . k .", "u.k."),
    ("e . g .", "e.g."),
)


# What Python's `str.split()` splits at, as RE2 spells it: `\s` is ASCII only and lacks `\v`.
_WHITESPACE = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\pZ]+"


def split_words(text) -> tf.Tensor:
    """The words of a scalar tf.string, split at whitespace runs as Python's `str.split()` (the official split)."""
    return tf.strings.split(tf.strings.regex_replace(tf.reshape(text, []), _WHITESPACE, " "))


def choose_words(num_words, ratio: float, seed) -> tf.Tensor:
    """`[num_words]` bool: `int(num_words * ratio)` of the words (the product in float64, as Python's), a subset
    drawn uniformly with the stateless `seed` (the official `random.sample(range(n), int(n * ratio))`).

    choose_words(10, 0.3, seed) → e.g. [F T F F F T F F T F]: exactly 3 True.
    """
    count = tf.cast(tf.math.floor(tf.cast(num_words, tf.float64) * ratio), tf.int32)
    chosen = tf.math.top_k(tf.random.stateless_uniform([num_words], seed), count).indices
    return tf.scatter_nd(chosen[:, None], tf.ones([count], tf.bool), [num_words])


def word_runs(words: tf.Tensor, blanked: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(texts, blank): the runs of consecutive words of the same kind, each joined by single spaces, and whether
    the run is blanked.

    words [the cat sat on the mat], blanked [F T T F T F] → [the, cat sat, on, the, mat], [F T F T F]
    """
    index = tf.range(tf.size(words))
    first = (blanked != tf.roll(blanked, 1, 0)) | (index == 0)
    run = tf.cumsum(tf.cast(first, tf.int32)) - 1
    texts = tf.strings.reduce_join(tf.RaggedTensor.from_value_rowids(words, run), axis=1, separator=" ")
    return texts, tf.boolean_mask(blanked, first)


def run_prefix(vocabulary) -> str:
    """What a run is encoded after: a space where it costs no token of its own (WordPiece, which ignores it;
    GPT-2's BPE, which marks word starts with it), else nothing (SentencePiece, whose pieces carry their own
    marker). Python-side: a vocabulary may encode Python text eagerly only."""
    return " " if len(vocabulary.encode(" a")) == len(vocabulary.encode("a")) else ""


def blank_example(words, blanked, vocabulary, *, source_len: int, target_len: int, prefix: str, unknown: str = ""):
    """The seq2seq fields (module docstring) of the text of `words` (1-D tf.string) with the words where `blanked`
    blanked; each run encoded after `prefix` (`run_prefix`). `unknown`: a text encoded as the vocabulary's
    unknown token (the official `[UNK]`)."""
    tokens = vocab.command_tokens(vocabulary)
    spec = tf.RaggedTensorSpec([None], tf.int32, ragged_rank=0)

    def encode(text):
        return layout.encode(tf.strings.join([prefix, text]), vocabulary, unknown, tokens.unk)

    def piece(run):
        text, blank = run
        return tf.cond(blank, lambda: tf.constant([tokens.mask], tf.int32), lambda: encode(text))

    texts, blank = word_runs(words, blanked)
    part_a = tf.map_fn(piece, (texts, blank), fn_output_signature=spec).flat_values[:source_len]
    kept = tf.reduce_sum(tf.cast(part_a == tokens.mask, tf.int32))
    answers = tf.map_fn(encode, tf.boolean_mask(texts, blank)[:kept], fn_output_signature=spec)
    sop, eop = (tf.RaggedTensor.from_tensor(tf.fill([kept, 1], t)) for t in (tokens.sop, tokens.eop))
    inputs_b = tf.concat([sop, answers], axis=1).flat_values[:target_len]
    targets_b = tf.concat([answers, eop], axis=1).flat_values[:target_len]
    spans_b = tf.repeat(tf.range(1, kept + 1), tf.cast(answers.row_lengths(), tf.int32) + 1)[:target_len]
    a_zeros = tf.zeros_like(part_a)
    return {
        "inputs": tf.concat([part_a, inputs_b], 0),
        "targets": tf.concat([a_zeros, targets_b], 0),
        "loss_weights": tf.concat([a_zeros, tf.ones_like(inputs_b)], 0),
        "span_ids": tf.concat([a_zeros, spans_b], 0),
        "part_a": part_a,
        "reference": tf.strings.reduce_join(words, separator=" "),
    }


def to_blanks(dataset, *, text, vocabulary, ratio: float, source_len: int, target_len: int, unknown: str = ""):
    """SeqIO preprocessor: examples → blank examples of `text(ex)` (a scalar tf.string) at `ratio`, new blanks for
    each seed (each epoch of training); examples left without a blank are dropped."""
    mask = vocab.command_tokens(vocabulary).mask
    convert = functools.partial(
        blank_example, vocabulary=vocabulary, source_len=source_len, target_len=target_len,
        prefix=run_prefix(vocabulary), unknown=unknown,
    )  # fmt: skip

    @seqio.map_over_dataset(num_seeds=1)
    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for autograph to rewrite
    def blank(ex, seed):
        words = split_words(tf.convert_to_tensor(text(ex), tf.string))
        return convert(words, choose_words(tf.size(words), ratio, seed))

    return blank(dataset).filter(lambda ex: tf.reduce_any(ex["part_a"] == mask))


def register_blank_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: seqio.Vocabulary,
    *,
    ratio: float,
    source_len: int,
    target_len: int,
    text=lambda ex: ex["text"],
    unknown: str = "",
    preprocessors=(),
    shuffle_buffer_size: int = 10_000,
) -> seqio.Task:
    """Registers (or replaces) task `name`: the texts `text(ex)` of `source` (after `preprocessors`), `ratio` of
    their words blanked, Part A of at most `source_len` tokens and Part B of at most `target_len`.

    Example (a jsonl of {"text": ...} lines):

        register_blank_task("my_blanks", sources.jsonl_files({"train": ..., "validation": ...}), vocabulary,
                            ratio=0.3, source_len=256, target_len=128)
    """
    vocab.command_tokens(vocabulary)  # a vocabulary without GLM's command tokens fails here, not in the pipeline
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio={ratio} must be in (0, 1].")
    if source_len < 1 or target_len < 1:
        raise ValueError(f"source_len={source_len} and target_len={target_len} must be at least 1.")
    tasks.remove_if_registered(seqio.TaskRegistry, name)
    convert = functools.partial(
        to_blanks, text=text, vocabulary=vocabulary, ratio=ratio, source_len=source_len, target_len=target_len,
        unknown=unknown,
    )  # fmt: skip
    task = seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[*preprocessors, convert],
        output_features=layout.output_features(vocabulary),
        shuffle_buffer_size=shuffle_buffer_size,
    )
    BLANK_TASKS.add(name)
    return task


def filled_ids(part_a, fills, lengths, tokens: CommandTokens) -> list[int]:
    """Part A with its j-th blank marker replaced by fill j (`fills[j, :lengths[j]]`) and its pads dropped, as the
    official `BlankLMEvaluater` puts its blanks back (a blank without a fill is dropped).

    part_a [the [MASK] on [MASK] mat [PAD]], fills [[cat sat], [the]] → [the cat sat on the mat]
    """
    out, blank = [], 0
    for token in np.asarray(part_a).tolist():
        if token in tokens.blank_markers:
            if blank < len(lengths):
                out += np.asarray(fills[blank][: lengths[blank]]).tolist()
            blank += 1
        elif token != tokens.pad:
            out.append(token)
    return out


def fix_tokenization(text: str) -> str:
    """The official `blanklm_fix_tokenization` (`_JOINS`): "don ' t" → "don't", "e . g ." → "e.g."."""
    for spaced, joined in _JOINS:
        text = text.replace(spaced, joined)
    return text


def filled_text(part_a, fills, lengths, vocabulary) -> str:
    """The text of `filled_ids`, decoded and with `fix_tokenization`: what BLEU scores against the reference."""
    return fix_tokenization(vocabulary.decode(filled_ids(part_a, fills, lengths, vocab.command_tokens(vocabulary))))
