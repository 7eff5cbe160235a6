"""Cloze questions as SeqIO tasks: a pattern with one blank, and candidate answers to score in it.

GLM does NLU by filling a blank (paper §2.3). A task's example is rewritten by a *pattern* into
Part A, `[CLS] pieces-with-one-[MASK] [eos]`; each candidate answer is a Part B span that fills
the blank, `sop` + its tokens, scored on its tokens and `eop`. Two kinds of answers:

- a *verbalizer*: one word per label, each a single token; its score is the log-probability of
  that token at the `sop` position (no `eop`), as the official single-token cloze;
- *candidates*: texts of any length given by the example (COPA's choices, ReCoRD's entities);
  each scores the sum of the log-probabilities of its tokens and `eop`.

A pattern returns a list of pieces: plain strings or scalar `tf.string` tensors (kept whole),
`shortenable(text)` (cut from its end while the example does not fit, the last shortenable
piece first, as the official `PVP.truncate`), and `MASK`. Each piece is tokenized on its own, as
the official code does. Part A is cut to `seq_len - longest answer` (answer = tokens + `eop`, or
just `sop` for a verbalizer); answers and the non-shortenable pieces are never cut.

A task's examples hold, per question:

    inputs          int32 [A]      Part A ids
    choice_ids      int32 [C, T]   each answer's target ids (tokens, then eop; a verbalizer id alone), 0-padded
    choice_lengths  int32 [C]      how many of them are real
    label           int32 []       index of the gold answer (-1: unknown)
    group           int64 []       question id that groups examples for a metric (MultiRC, ReCoRD), else -1
    truncated       int32 []       1 if a shortenable piece was cut
    choice_texts    string [C]     the answers as text
    answers         string [G]     gold answer texts, where a metric needs them (ReCoRD), else empty
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np
import seqio
import tensorflow as tf

from glm_jax.data import tasks, vocab
from glm_jax.data.command_tokens import CommandTokens


class _Mask:
    def __repr__(self):
        return "MASK"


MASK = _Mask()  # the one blank of a pattern


@dataclasses.dataclass(frozen=True)
class Shortenable:
    text: object  # str or scalar tf.string


def shortenable(text) -> Shortenable:
    """A piece that may be cut from its end to make the example fit (a passage, a premise, ...)."""
    return Shortenable(text)


@dataclasses.dataclass(frozen=True)
class Cloze:
    """How the examples of a source become cloze questions.

    pattern: TF example → pieces (see module docstring), with exactly one `MASK`.
    verbalizer: label i → a word that is one token (single-token answers), or
    candidates: TF example → 1-D `tf.string` of candidate texts (multi-token answers).
    label: TF example → int32 index of the gold verbalizer word or candidate (-1 unknown).
    group: TF example → int64 question id for grouped metrics (default: -1).
    answers: TF example → 1-D `tf.string` of gold texts for text metrics (default: none).
    """

    pattern: Callable[[dict], Sequence]
    verbalizer: Sequence[str] = ()
    candidates: Callable[[dict], tf.Tensor] | None = None
    label: Callable[[dict], tf.Tensor] = lambda ex: ex["label"]
    group: Callable[[dict], tf.Tensor] | None = None
    answers: Callable[[dict], tf.Tensor] | None = None

    def __post_init__(self):
        if bool(self.verbalizer) == (self.candidates is not None):
            raise ValueError("A cloze task takes exactly one of `verbalizer` (words) or `candidates` (a function).")

    @property
    def single_token(self) -> bool:
        return bool(self.verbalizer)


FIELDS = ("inputs", "choice_ids", "choice_lengths", "label", "group", "truncated", "choice_texts", "answers")


def verbalizer_ids(words: Sequence[str], vocabulary: seqio.Vocabulary) -> list[int]:
    """The one token of each verbalizer word; a word of several tokens is an error naming it."""
    ids = []
    for word in words:
        pieces = vocabulary.encode(word)
        if len(pieces) != 1:
            raise ValueError(
                f"Verbalizer word {word!r} is {len(pieces)} tokens {pieces} in this vocabulary, not one; "
                "choose a single-token word or score the labels as multi-token candidates."
            )
        ids.append(pieces[0])
    return ids


def encode_text(text, vocabulary) -> tf.Tensor:
    """int32 ids of a scalar tf.string piece (no eos); a blank piece has none."""
    text = tf.convert_to_tensor(text, tf.string)
    return tf.cond(
        tf.strings.length(tf.strings.strip(text)) > 0,
        lambda: tf.cast(vocabulary.encode_tf(text), tf.int32),
        lambda: tf.zeros([0], tf.int32),
    )


def part_a(pieces: Sequence, vocabulary, tokens: CommandTokens, budget) -> tuple[tf.Tensor, tf.Tensor]:
    """(`[CLS] pieces [eos]` ids cut to at most `budget` tokens, 1 if something was cut).

    The excess is removed from the end of the last shortenable piece, then the one before, ...;
    an example that does not fit with every shortenable piece emptied is an error.
    """
    if sum(p is MASK for p in pieces) != 1:
        raise ValueError(f"A cloze pattern needs exactly one MASK piece; got {list(pieces)}.")
    ids, cuttable = [], []
    for p in pieces:
        if p is MASK:
            ids.append(tf.constant([tokens.mask], tf.int32))
        else:
            ids.append(encode_text(p.text if isinstance(p, Shortenable) else p, vocabulary))
        cuttable.append(isinstance(p, Shortenable))
    total = 2 + tf.add_n([tf.size(x) for x in ids])
    excess = tf.maximum(total - budget, 0)
    remaining = excess
    for i in reversed(range(len(ids))):
        if cuttable[i]:
            cut = tf.minimum(tf.size(ids[i]), remaining)
            ids[i] = ids[i][: tf.size(ids[i]) - cut]
            remaining -= cut
    check = tf.debugging.assert_equal(
        remaining, 0, message=f"cloze example longer than its budget even with shortenable pieces cut ({pieces})"
    )
    with tf.control_dependencies([check]):
        out = tf.concat([[tokens.cls], *ids, [tokens.eos]], 0)
    return out, tf.cast(excess > 0, tf.int32)


def _answers(cloze: Cloze, ex: dict, vocabulary, tokens: CommandTokens, verbalizer: list[int]):
    """(choice_ids [C, T], choice_lengths [C], choice_texts [C]) of one example."""
    if cloze.single_token:
        ids = tf.constant(verbalizer, tf.int32)[:, None]
        return ids, tf.ones([len(verbalizer)], tf.int32), tf.constant(list(cloze.verbalizer))
    texts = tf.reshape(cloze.candidates(ex), [-1])
    spec = tf.RaggedTensorSpec([None], tf.int32, ragged_rank=0)
    ragged = tf.map_fn(lambda t: encode_text(t, vocabulary), texts, fn_output_signature=spec)
    eop = tf.fill([tf.shape(texts)[0], 1], tokens.eop)
    ids = tf.concat([ragged, tf.RaggedTensor.from_tensor(eop)], axis=1)
    return ids.to_tensor(), tf.cast(ids.row_lengths(), tf.int32), texts


def to_questions(dataset, sequence_length, *, cloze: Cloze, vocabulary: seqio.Vocabulary):
    """SeqIO preprocessor: source examples → cloze questions (the fields of the module docstring)."""
    seq_len = sequence_length["inputs"]
    tokens = vocab.command_tokens(vocabulary)
    verbalizer = verbalizer_ids(cloze.verbalizer, vocabulary) if cloze.single_token else []

    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for autograph to rewrite
    def convert(ex):
        choice_ids, lengths, texts = _answers(cloze, ex, vocabulary, tokens, verbalizer)
        longest = tf.reduce_max(tf.concat([lengths, [1]], 0))
        inputs, truncated = part_a(cloze.pattern(ex), vocabulary, tokens, seq_len - longest)
        empty = tf.zeros([0], tf.string)
        return {
            "inputs": inputs,
            "choice_ids": choice_ids,
            "choice_lengths": lengths,
            "label": tf.cast(cloze.label(ex), tf.int32),
            "group": tf.cast(cloze.group(ex), tf.int64) if cloze.group else tf.constant(-1, tf.int64),
            "truncated": truncated,
            "choice_texts": texts,
            "answers": tf.reshape(cloze.answers(ex), [-1]) if cloze.answers else empty,
        }

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


_RANKS = {"inputs": 1, "choice_ids": 2, "choice_lengths": 1, "label": 0, "group": 0, "truncated": 0}


def register_cloze_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: seqio.Vocabulary,
    cloze: Cloze,
    *,
    preprocessors: Sequence = (),
    shuffle_buffer_size: int = 10_000,
) -> seqio.Task:
    """Registers (or replaces) task `name`: the examples of `source`, after `preprocessors` (source
    specific, e.g. renaming fields), as cloze questions of `cloze` in `vocabulary`.

    Example (a sentiment jsonl with `text` and `label` 0/1):

        register_cloze_task("my_sentiment", sources_lib.jsonl_examples({...}), vocabulary,
                            Cloze(lambda ex: [shortenable(ex["text"]), " It was", MASK, "."],
                                  verbalizer=("bad", "good")))
    """
    if cloze.single_token:
        verbalizer_ids(cloze.verbalizer, vocabulary)  # fail at registration, not inside the pipeline
    tasks.remove_if_registered(seqio.TaskRegistry, name)
    ids = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(vocabulary.vocab_size), add_eos=False)
    features = {key: ids(rank=rank, dtype=tf.int64 if key == "group" else tf.int32) for key, rank in _RANKS.items()}
    features["inputs"] = seqio.Feature(vocabulary, add_eos=False)
    text = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(0), add_eos=False, dtype=tf.string)
    features.update(choice_texts=text(rank=1), answers=text(rank=1))
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[
            *preprocessors,
            functools.partial(to_questions, cloze=cloze, vocabulary=vocabulary),
        ],
        output_features=features,
        shuffle_buffer_size=shuffle_buffer_size,
    )


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Static batch shapes of a cloze task: Part A slots, answers per question, tokens per answer."""

    part_a: int
    choices: int
    answer_len: int


def pad_question(ex: dict, shapes: Shapes) -> dict:
    """One question padded to `shapes` (TF); more answers or longer ones than it holds is an error."""
    c, t = tf.shape(ex["choice_ids"])[0], tf.shape(ex["choice_ids"])[1]
    checks = [
        tf.debugging.assert_less_equal(
            c, shapes.choices, message=f"a question has more answers than finetune.max_choices={shapes.choices}"
        ),
        tf.debugging.assert_less_equal(
            t, shapes.answer_len, message=f"an answer is longer than finetune.answer_len={shapes.answer_len} tokens"
        ),
    ]
    with tf.control_dependencies(checks):
        a = tf.size(ex["inputs"])
        out = {
            "inputs": tf.pad(ex["inputs"], [[0, shapes.part_a - a]]),
            "segment_ids": tf.pad(tf.ones([a], tf.int32), [[0, shapes.part_a - a]]),
            "choice_ids": tf.pad(ex["choice_ids"], [[0, shapes.choices - c], [0, shapes.answer_len - t]]),
            "choice_lengths": tf.pad(ex["choice_lengths"], [[0, shapes.choices - c]]),
            "choice_texts": tf.pad(ex["choice_texts"], [[0, shapes.choices - c]]),
        }
    for key in ("label", "group", "truncated"):
        out[key] = ex[key]
    out["answers"] = ex["answers"]
    return out


def padded_shapes(shapes: Shapes) -> dict:
    return {
        "inputs": [shapes.part_a],
        "segment_ids": [shapes.part_a],
        "choice_ids": [shapes.choices, shapes.answer_len],
        "choice_lengths": [shapes.choices],
        "choice_texts": [shapes.choices],
        "label": [],
        "group": [],
        "truncated": [],
        "answers": [None],
    }


DEVICE_FIELDS = ("inputs", "segment_ids", "choice_ids", "choice_lengths", "label")


def empty_rows(batch: dict, rows: int) -> dict:
    """`batch` (host arrays) padded with `rows` questions that score nothing (label -1, no answers)."""
    out = {}
    for k, v in batch.items():
        out[k] = np.concatenate([v, np.zeros((rows, *v.shape[1:]), v.dtype)]) if rows else v
    if rows:
        out["label"][-rows:] = -1
    return out
