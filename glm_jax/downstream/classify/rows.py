"""Classifier inputs as SeqIO tasks: each example as the official rows `[CLS] text_a [SEP] text_b [eos]`.

The official code builds a classifier's input with `build_input_from_ids(tokens_a, tokens_b, add_cls=True,
add_sep=True)` (`tasks/data_utils.py`): `[CLS]`, text_a's ids, `[SEP]`, text_b's ids, cut from its end to
`seq_len - 1` tokens where it is longer, then `[eos]`. With `data.seq_len` = 8:

    text_a "the cat", text_b "sat on a mat"   [CLS] the cat [SEP] sat on a mat [eos]   (8 tokens, fits)
    text_b "sat on a red mat"                 [CLS] the cat [SEP] sat on a red [eos]   (cut: truncated 1)

With continuous prompts (`prompt.*`, `glm_jax.downstream.prompts`; our extension: the official classifier
rows have none), text_a and text_b (if any) each start with a prompt spot, `prompt.tokens` spread over them as
over a pattern's, and the prefix comes first: `[CLS] p0 p1 text_a [SEP] p2 text_b [eos]` (3 tokens, prefix 0).
The row is cut as above; a cut that reaches text_b's prompt tokens drops them.

A classification task (`labels`: RTE, BoolQ, ...) has one row per example and a logit per class; a
multiple-choice task (`choices`: COPA, ReCoRD) has one row per choice, the choice's texts in it, and a
logit per row. A text is a list of pieces, each tokenized on its own and joined (ReCoRD's text_b is its
query, then the entity: `tokens_b + answer_ids` in the official code); a piece is a scalar `tf.string`, or
in a multiple-choice task a `[C]` one, a text per choice.

A task's examples hold, per question:

    inputs          int32 [ΣL]   the ids of each row, one after another
    row_lengths     int32 [R]    the length of each row (R = 1, or one per choice)
    label           int32 []     the gold class or choice (-1: unknown)
    group           int64 []     question id that groups examples for a metric (MultiRC, ReCoRD), else -1
    truncated       int32 []     1 if a row was cut
    choice_texts    string [C]   the class names, or the choices
    answers         string [G]   gold answer texts, where a metric needs them (ReCoRD), else empty
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import seqio
import tensorflow as tf

from glm_jax.data import tasks, vocab
from glm_jax.downstream import prompts as prompts_lib
from glm_jax.downstream.cloze.questions import encode_text
from glm_jax.downstream.prompts import NO_PROMPTS, Prompts


@dataclasses.dataclass(frozen=True)
class Classifier:
    """How the examples of a source become classifier rows.

    texts: (TF example, its choices `[C]` or None) → (pieces of text_a, pieces of text_b).
    labels: the class names of a classification task (one row, a logit each), or
    choices: TF example → 1-D `tf.string` of its choices (a multiple-choice task: a row and a logit each).
    label: TF example → int32 index of the gold class or choice (-1 unknown).
    group: TF example → int64 question id for grouped metrics (default: -1).
    answers: TF example → 1-D `tf.string` of gold texts for text metrics (default: none).
    """

    texts: Callable[[dict, tf.Tensor | None], tuple[Sequence, Sequence]]
    labels: Sequence[str] = ()
    choices: Callable[[dict], tf.Tensor] | None = None
    label: Callable[[dict], tf.Tensor] = lambda ex: ex["label"]
    group: Callable[[dict], tf.Tensor] | None = None
    answers: Callable[[dict], tf.Tensor] | None = None

    def __post_init__(self):
        if bool(self.labels) == (self.choices is not None):
            raise ValueError("A classify task takes exactly one of `labels` (classes) or `choices` (a function).")

    @property
    def outputs(self) -> int:
        """Logits per row: one per class, or one (a row per choice)."""
        return len(self.labels) or 1


def encode_pieces(pieces: Sequence, vocabulary, rows) -> tf.RaggedTensor:
    """`[rows, None]` ids: each piece tokenized on its own (a scalar piece alike in every row), joined."""
    spec = tf.RaggedTensorSpec([None], tf.int32, ragged_rank=0)
    parts = [tf.RaggedTensor.from_tensor(tf.zeros([rows, 0], tf.int32))]
    for piece in pieces:
        piece = tf.convert_to_tensor(piece, tf.string)
        if piece.shape.rank == 0:
            parts.append(tf.RaggedTensor.from_tensor(tf.tile(encode_text(piece, vocabulary)[None], [rows, 1])))
        else:
            parts.append(tf.map_fn(lambda t: encode_text(t, vocabulary), piece, fn_output_signature=spec))
    return tf.concat(parts, axis=1)


def official_rows(ids_a: tf.RaggedTensor, ids_b: tf.RaggedTensor, tokens, budget: int):
    """(`[CLS] a [SEP] b` cut to `budget - 1` tokens, then `[eos]`, as a ragged `[R, None]`; 1 per row that was
    cut), as the official `build_input_from_ids` with add_cls and add_sep."""
    rows = ids_a.nrows()
    column = lambda token: tf.RaggedTensor.from_tensor(tf.fill([rows, 1], token))  # noqa: E731
    full = tf.concat([column(tokens.cls), ids_a, column(tokens.sep), ids_b], axis=1)
    cut = tf.concat([full[:, : budget - 1], column(tokens.eos)], axis=1)
    return cut, tf.cast(full.row_lengths() + 1 > budget, tf.int32)


def with_prompt_tokens(ids: tf.RaggedTensor, prompt_ids: list[int]) -> tf.RaggedTensor:
    """`[R, None]` ids with `prompt_ids` before each row's."""
    column = tf.RaggedTensor.from_tensor(tf.tile(tf.constant(prompt_ids, tf.int32)[None], [ids.nrows(), 1]))
    return tf.concat([column, ids], axis=1) if prompt_ids else ids


def to_rows(dataset, sequence_length, *, classifier: Classifier, vocabulary: seqio.Vocabulary,
            prompts: Prompts = NO_PROMPTS):  # fmt: skip
    """SeqIO preprocessor: source examples → classifier rows of at most `sequence_length["inputs"]` tokens."""
    tokens = vocab.command_tokens(vocabulary)

    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for autograph to rewrite
    def convert(ex):
        if classifier.choices is None:
            choices, names, count = None, tf.constant(list(classifier.labels)), 1
        else:
            choices = names = tf.reshape(classifier.choices(ex), [-1])
            count = tf.size(choices)
        text_a, text_b = classifier.texts(ex, choices)
        a, b = encode_pieces(text_a, vocabulary, count), encode_pieces(text_b, vocabulary, count)
        spots = prompts_lib.spread(prompts.tokens, 1 + bool(text_b))
        a = with_prompt_tokens(a, prompts.ids(0, prompts.prefix + spots[0]))
        b = with_prompt_tokens(b, prompts.ids(prompts.prefix + spots[0], sum(spots[1:])))
        rows, truncated = official_rows(a, b, tokens, sequence_length["inputs"])
        return {
            "inputs": rows.flat_values,
            "row_lengths": tf.cast(rows.row_lengths(), tf.int32),
            "label": tf.cast(classifier.label(ex), tf.int32),
            "group": tf.cast(classifier.group(ex), tf.int64) if classifier.group else tf.constant(-1, tf.int64),
            "truncated": tf.reduce_max(truncated),
            "choice_texts": names,
            "answers": tf.reshape(classifier.answers(ex), [-1]) if classifier.answers else tf.zeros([0], tf.string),
        }

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


_CLASSIFIERS: dict[str, Classifier] = {}  # by task name, for the head's shape
_RANKS = {"inputs": 1, "row_lengths": 1, "label": 0, "group": 0, "truncated": 0}


def register_classify_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: seqio.Vocabulary,
    classifier: Classifier,
    *,
    prompts: Prompts = NO_PROMPTS,
) -> seqio.Task:
    """Registers (or replaces) task `name`: the examples of `source` as classifier rows of `classifier`, with the
    continuous prompt tokens `prompts`.

    Example (a sentiment jsonl with `text` and `label` 0/1):

        register_classify_task("my_sentiment", sources_lib.jsonl_examples({...}), vocabulary,
                               Classifier(lambda ex, _: ([ex["text"]], []), labels=("bad", "good")))
    """
    tasks.remove_if_registered(seqio.TaskRegistry, name)
    ids = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(vocabulary.vocab_size), add_eos=False)
    features = {key: ids(rank=rank, dtype=tf.int64 if key == "group" else tf.int32) for key, rank in _RANKS.items()}
    features["inputs"] = seqio.Feature(vocabulary, add_eos=False)
    text = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(0), add_eos=False, dtype=tf.string, rank=1)
    features.update(choice_texts=text(), answers=text())
    _CLASSIFIERS[name] = classifier
    prompts_lib.remember(name, functools.partial(register_classify_task, name, source, vocabulary, classifier))
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[functools.partial(to_rows, classifier=classifier, vocabulary=vocabulary, prompts=prompts)],
        output_features=features,
    )


def classifier_of(task: str) -> Classifier:
    """The `Classifier` task `task` was registered with; a task of another kind is a config error."""
    if task not in _CLASSIFIERS:
        raise ValueError(
            f"Invalid config: finetune.task={task!r} is not a classify task; finetune.kind=classify needs one "
            "registered with glm_jax.downstream.classify.register_classify_task (or finetune.superglue)."
        )
    return _CLASSIFIERS[task]


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Static batch shapes: rows per question, tokens per row, logits per question (rows × head outputs)."""

    rows: int
    seq_len: int
    choices: int


def pad_question(ex: dict, shapes: Shapes) -> dict:
    """One question padded to `shapes` (TF): `inputs` and `segment_ids` `[rows, seq_len]`, `choice_mask`
    `[choices]` (1 for a real class or choice); more choices than `shapes` holds is an error."""
    rows, choices = tf.size(ex["row_lengths"]), tf.size(ex["choice_texts"])
    message = f"a question has more choices than finetune.max_choices={shapes.rows}"
    with tf.control_dependencies([tf.debugging.assert_less_equal(rows, shapes.rows, message=message)]):
        ragged = tf.RaggedTensor.from_row_lengths(ex["inputs"], ex["row_lengths"])
    square = [shapes.rows, shapes.seq_len]
    padded = lambda x: tf.pad(x, [[0, shapes.choices - choices]])  # noqa: E731
    return {
        "inputs": ragged.to_tensor(shape=square),
        "segment_ids": tf.ones_like(ragged).to_tensor(shape=square),
        "choice_mask": padded(tf.ones([choices], tf.int32)),
        "choice_texts": padded(ex["choice_texts"]),
        **{key: ex[key] for key in ("label", "group", "truncated", "answers")},
    }


def padded_shapes(shapes: Shapes) -> dict:
    square = [shapes.rows, shapes.seq_len]
    return {"inputs": square, "segment_ids": square, "choice_mask": [shapes.choices], "choice_texts": [shapes.choices],
            "label": [], "group": [], "truncated": [], "answers": [None]}  # fmt: skip


DEVICE_FIELDS = ("inputs", "segment_ids", "choice_mask", "label")
