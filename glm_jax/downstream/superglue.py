"""The eight SuperGLUE tasks as cloze questions, with the patterns and verbalizers of the official GLM code
(`tasks/superglue/pvp.py`, the data handling of `tasks/superglue/dataset.py`) and its fine-tuning recipes.

- `register(task, vocabulary, source=..., pattern_id=...)`: SeqIO task `superglue_{task}` of cloze questions
  (fields: `cloze` module docstring); `make_cloze` gives its `cloze.Cloze` alone.
- `examples(task, source)`: the task's examples with the TFDS features, splits "train", "validation", "test",
  from "tfds" (the builders `super_glue/{boolq,cb,copa,multirc,record,rte,wic,wsc.fixed}`), "jsonl:DIR" (the
  original release files `DIR/train.jsonl`, `DIR/val.jsonl` and `DIR/test.jsonl` if present, flattened and
  labelled as TFDS does: MultiRC one example per answer option, ReCoRD one per query with entities and answers
  as sorted unique texts) or any `seqio.DataSource` of such examples.
- `RECIPES`: the official fine-tuning settings and default pattern of each task, `PATTERN_IDS` all patterns;
  `measure` finds a split's largest answer shapes.

As the official code, texts have their curly quotes and en dashes made plain (`punctuation_standardization`,
not for COPA), and the train split differs from the others:

- COPA: each example also comes mirrored (choices swapped, label flipped);
- ReCoRD: one question per gold answer, its candidates that answer, then the other entities in sorted order,
  or 9 of them drawn at random where there are more; elsewhere one question per query over all entities
  (made plain, deduplicated, then sorted), label the first gold among them, `answers` all golds;
- WSC: only the examples whose label is True.

WSC's negative candidates are the other span1 texts the split pairs with the same text and pronoun: the
dataset repeats each sentence with different candidate referents. Label 0 is always the example's own span1;
`group` holds its original label (1 True, 0 False, -1 unknown), so that an evaluation predicts True iff
candidate 0 scores best.

What still differs from the official code, and why, is listed in docs/official_differences.md.
"""

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable, Iterable

import seqio
import tensorflow as tf

from glm_jax.data.sources import DataError
from glm_jax.downstream import cloze
from glm_jax.downstream.cloze import MASK, shortenable

TASKS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
SPLITS = {"train": "train", "validation": "val", "test": "test"}  # our split -> original file stem
TFDS_VERSION = "1.0.2"
RECORD_TRAIN_CANDIDATES = 10  # the official max_train_candidates_per_question

# The official punctuation_standardization.
_PUNCTUATION = {"\u201c": '"', "\u201d": '"', "\u2019": "'", "\u2018": "'", "\u2013": "-"}


# ---------------------------------------------------------------------------------------------------------------
# Fine-tuning recipes


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Official fine-tuning settings of a task, and the static answer shapes of its batches.

    All tasks also use linear decay, warmup 0.1 of the steps and weight decay 0.1 (`TRAIN_ARGS`).
    """

    seq_len: int
    batch_size: int
    epochs: int
    pattern_id: int
    max_choices: int  # answers per question (the most of any question of any split)
    answer_len: int  # tokens per answer including eop; 1 for single-token verbalizers
    lr: float = 1e-5
    max_train_choices: int = 0  # answers per training question, if fewer (0: max_choices)
    length_penalty: float = 0.0
    loss: str = "ce"


# From `config_tasks/task_{name}.sh` (MAX_SEQ_LEN, BATCH_SIZE, EPOCH_SINGLE, LR_SINGLE, --pattern-id, and for WSC
# --loss-func mix --length-penalty 1) as `scripts/finetune_superglue.sh` runs them: BATCH_SIZE is the global batch
# and overrides MultiRC's `--batch-size 16`; the 10B model's script uses XXLARGE_EPOCH instead (BoolQ 24, CB 100,
# COPA 100, MultiRC 12, ReCoRD 3, RTE 50, WiC 40, WSC 100).
# max_choices and answer_len: the number of labels for verbalizers (answer_len 1, their token). The multi-token
# bounds could not be measured here (no SuperGLUE data offline); they are generous guesses, and a question beyond
# them fails loudly in `cloze.pad_question`. Measure the real data with `measure(...)`: COPA's choices are short
# sentences; ReCoRD's train questions have at most RECORD_TRAIN_CANDIDATES answers but evaluation takes every
# entity of the passage; WSC holds the distinct span1 texts of a sentence (the official train chunks are 1 + 9).
RECIPES = {
    "boolq": Recipe(seq_len=256, batch_size=16, epochs=20, pattern_id=4, max_choices=2, answer_len=1),
    "cb": Recipe(seq_len=256, batch_size=16, epochs=50, pattern_id=3, max_choices=3, answer_len=1),
    "copa": Recipe(seq_len=256, batch_size=16, epochs=50, pattern_id=0, max_choices=2, answer_len=32),
    "multirc": Recipe(seq_len=512, batch_size=64, epochs=15, pattern_id=0, max_choices=2, answer_len=1),
    "record": Recipe(
        seq_len=512,
        batch_size=64,
        epochs=5,
        pattern_id=0,
        max_choices=64,
        answer_len=16,
        max_train_choices=RECORD_TRAIN_CANDIDATES,
    ),
    "rte": Recipe(seq_len=256, batch_size=16, epochs=50, pattern_id=0, max_choices=2, answer_len=1),
    "wic": Recipe(seq_len=256, batch_size=16, epochs=30, pattern_id=1, max_choices=2, answer_len=1),
    "wsc": Recipe(
        seq_len=128,
        batch_size=16,
        epochs=50,
        pattern_id=2,
        max_choices=10,
        answer_len=16,
        length_penalty=1.0,
        loss="mix",
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# Text helpers (TF)


def standardize(text):
    """Curly quotes and en dashes made plain, as the official `punctuation_standardization`."""
    for old, new in _PUNCTUATION.items():
        text = tf.strings.regex_replace(text, old, new)
    return text


def _standardize_py(text: str) -> str:
    return text.translate(str.maketrans(_PUNCTUATION))


def _rstrip(text):
    return tf.strings.regex_replace(text, r"\s+$", "")


def _remove_final_punc(text):
    """Python's `text.rstrip(string.punctuation)`."""
    return tf.strings.regex_replace(text, "[[:punct:]]+$", "")


def _lowercase_first(text):
    n = tf.strings.length(text, unit="UTF8_CHAR")
    first = tf.strings.lower(tf.strings.substr(text, 0, 1, unit="UTF8_CHAR"), encoding="utf-8")
    return first + tf.strings.substr(text, tf.minimum(1, n), n, unit="UTF8_CHAR")


def _question_id(paragraph, question):
    """A question id unique across a split: its passage's index * 10**6 + its own."""
    return tf.cast(paragraph, tf.int64) * 1_000_000 + tf.cast(question, tf.int64)


# ---------------------------------------------------------------------------------------------------------------
# Patterns (official ids) and verbalizers; `p` is the pattern id.


def _boolq(ex, p):
    passage, question = standardize(ex["passage"]), standardize(ex["question"])
    if p < 2:
        return [shortenable(passage), " Question:", shortenable(" " + question), "? Answer:", MASK, "."]
    if p < 4:
        return [shortenable(passage), " Based on the previous passage,", shortenable(" " + question), "?", MASK, "."]
    return ["Based on the following passage", shortenable(" " + question), "?", MASK, ".", shortenable(" " + passage)]


def _rte(ex, p):
    """Patterns 0-3 have two segments (hypothesis; blank and premise), truncated in turn as the official."""
    premise = standardize(ex["premise"])
    hypothesis = _remove_final_punc(standardize(ex["hypothesis"]))
    return {
        0: (['"', shortenable(hypothesis), '" ?'], [MASK, ",", ' "', shortenable(premise), '"']),
        1: ([shortenable(hypothesis), "?"], [MASK, ",", shortenable(" " + premise)]),
        2: (['"', shortenable(hypothesis), '" ?'], [MASK, '. "', shortenable(premise), '"']),
        3: ([shortenable(hypothesis), "?"], [MASK, ".", shortenable(" " + premise)]),
        4: [shortenable(premise), " question:", shortenable(" " + hypothesis), " True or False?", " answer:", MASK],
    }[p]


def _cb(ex, p):
    if p < 4:
        return _rte(ex, p)
    premise, hypothesis = standardize(ex["premise"]), standardize(ex["hypothesis"])
    return [
        shortenable(premise),
        " question:",
        shortenable(" " + hypothesis),
        " true, false or neither?",
        " answer:",
        MASK,
    ]


def _copa_choices(ex):
    return [_remove_final_punc(_lowercase_first(ex[key])) for key in ("choice1", "choice2")]


def _copa(ex, p):
    premise = shortenable(_remove_final_punc(" " + ex["premise"]))
    joiner = tf.where(ex["question"] == "cause", " because", ", so")
    c1, c2 = _copa_choices(ex)
    if p == 0:
        return ['"', c1, '" or "', c2, '"?', premise, joiner, MASK, "."]
    return [c1, " or", " " + c2, "?", premise, joiner, MASK, "."]


def _multirc(ex, p):
    passage = shortenable(_remove_final_punc(_rstrip(standardize(ex["paragraph"]))))
    question = _remove_final_punc(_rstrip(standardize(ex["question"])))
    answer = standardize(ex["answer"])
    return {
        0: [passage, ".", " Question:", " " + question + "?", " Is it", " " + answer, "?", MASK, "."],
        1: [passage, ".", " Question:", " " + question, "?", ' Is the correct answer "', answer, '"?', MASK, "."],
        2: [
            passage,
            ". Based on the previous passage,",
            " " + question,
            "?",
            ' Is "',
            answer,
            '" a correct answer?',
            MASK,
            ".",
        ],
        3: [passage, " " + question, "- [", MASK, "]", answer],
        4: [passage, ".", " Question:", " " + question, "?", " " + answer, "?", MASK, "."],
    }[p]


def _wic(ex, p):
    s1, s2, word = standardize(ex["sentence1"]), standardize(ex["sentence2"]), ex["word"]
    if p == 0:
        return [shortenable('"' + s1 + '" / "' + s2 + '"'), ' Similar sense of "' + word + '"?', MASK, "."]
    if p == 1:
        return [
            shortenable(s1),
            shortenable(" " + s2),
            " Does " + word + " have the same meaning in both sentences?",
            MASK,
        ]
    return [word, " .", ' Sense (1) (a) "', shortenable(s1), '"', " (", MASK, ') "', s2, '"']


def _wsc(ex, p):
    pronoun = "'*" + ex["span2_text"] + "*'"
    return {
        0: [shortenable(ex["marked_text"]), " The pronoun " + pronoun + " refers to", MASK, "."],
        1: [
            shortenable(ex["marked_text"]),
            " In the previous sentence, the pronoun " + pronoun + " refers to",
            MASK,
            ".",
        ],
        2: [
            shortenable(ex["marked_text"]),
            " Question: In the passage above, what does the pronoun " + pronoun + " refer to?",
            " Answer:",
            MASK,
            ".",
        ],
    }[p]


def _record(ex, p):
    del p  # the only pattern
    passage = tf.strings.regex_replace(standardize(ex["passage"]), "@highlight\n", "- ")  # as the GPT-3 paper
    parts = tf.concat([tf.strings.split(standardize(ex["query"]), "@placeholder", maxsplit=1), [""]], 0)
    left, right = parts[0], parts[1]
    return [shortenable(passage), " " + _rstrip(left), MASK, right]


def sort_strings(texts):
    """A 1-D `tf.string` of distinct texts in Python's order (by code points), as `sorted` gives them."""
    codes = tf.strings.unicode_decode(texts, "UTF-8").to_tensor(default_value=-1)  # a shorter text sorts first
    differ = tf.not_equal(codes[:, None, :], codes[None, :, :])  # [N, N, chars]
    first = differ & (tf.cumsum(tf.cast(differ, tf.int32), axis=-1, exclusive=True) == 0)
    less = tf.reduce_any(first & (codes[:, None, :] < codes[None, :, :]), axis=-1)  # less[i, j]: i before j
    return tf.gather(texts, tf.argsort(tf.reduce_sum(tf.cast(less, tf.int32), axis=0)))


def _record_plain(ex):
    """Entities and answers made plain and deduplicated, the entities then sorted (official RecordProcessor)."""
    entities = sort_strings(tf.unique(standardize(ex["entities"])).y)
    return ex | {"entities": entities, "answers": tf.unique(standardize(ex["answers"])).y}


def _is_in(texts, others):
    return tf.reduce_any(tf.equal(texts[:, None], others[None, :]), axis=1)


def _first_gold(ex):
    """Index of the first entity that is a gold answer, -1 if none is."""
    hits = tf.where(_is_in(ex["entities"], ex["answers"]))[:, 0]
    return tf.cast(tf.concat([hits, [-1]], 0)[0], tf.int32)


_YES_NO = (" No", " Yes")  # labels 0 False, 1 True


def _boolq_words(p):
    return _YES_NO if p % 2 == 0 else (" false", " true")


def _rte_words(p):  # labels entailment, not_entailment
    return (" true", " false") if p == 4 else (" Yes", " No")


def _cb_words(p):  # labels entailment, contradiction, neutral
    return (" true", " false", " neither") if p == 4 else (" Yes", " No", " Maybe")


def _multirc_words(p):
    return (" False", " True") if p == 3 else _YES_NO


def _wic_words(p):
    return ("2", "b") if p == 2 else _YES_NO


# ---------------------------------------------------------------------------------------------------------------
# Original jsonl rows -> examples with the TFDS features


def _text(row: dict, key: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is {value!r}, not a string")
    return value


def _label(row: dict, names: tuple[str, ...] = ()) -> int:
    """TFDS's label: the index of a class name, or 0/1 for a bool; -1 where the row has none (test)."""
    if "label" not in row:
        return -1
    value = row["label"]
    if names:
        return names.index(value)
    if not isinstance(value, bool | int) or int(value) not in (0, 1):
        raise ValueError(f"label {value!r} is not a boolean")
    return int(value)


def _flat(fields: tuple[str, ...], ints: tuple[str, ...] = (), names: tuple[str, ...] = ()):
    """Rows of a task whose jsonl lines are flat: the text `fields`, the integer `ints`, idx and label."""

    def rows(row):
        example = {key: _text(row, key) for key in fields} | {key: int(row[key]) for key in ints}
        return [example | {"idx": int(row["idx"]), "label": _label(row, names)}]

    return rows


def _wsc_rows(row):
    target = row["target"]
    return [
        {
            "text": _text(row, "text"),
            "span1_text": _text(target, "span1_text"),
            "span2_text": _text(target, "span2_text"),
            "span1_index": int(target["span1_index"]),
            "span2_index": int(target["span2_index"]),
            "idx": int(row["idx"]),
            "label": _label(row),
        }
    ]


def _multirc_rows(row):
    passage = row["passage"]
    return [
        {
            "paragraph": _text(passage, "text"),
            "question": _text(question, "question"),
            "answer": _text(answer, "text"),
            "idx": {"paragraph": int(row["idx"]), "question": int(question["idx"]), "answer": int(answer["idx"])},
            "label": _label(answer),
        }
        for question in passage["questions"]
        for answer in question["answers"]
    ]


def _record_rows(row):
    text = _text(row["passage"], "text")
    entities = sorted({text[e["start"] : e["end"] + 1] for e in row["passage"]["entities"]})
    return [
        {
            "passage": text,
            "query": _text(qa, "query"),
            "entities": entities,
            "answers": sorted({_text(a, "text") for a in qa.get("answers", [])}),
            "idx": {"passage": int(row["idx"]), "query": int(qa["idx"])},
        }
        for qa in row["qas"]
    ]


def read_jsonl(path: str, rows: Callable[[dict], list[dict]]) -> Iterable[dict]:
    """The examples of an original SuperGLUE file; a malformed line is an error naming the file and line."""
    with tf.io.gfile.GFile(path, "rb") as f:  # bytes: a line that is not UTF-8 is an error naming it
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                examples = rows(json.loads(line.decode("utf-8")))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
                # a DataError: `sources.data_errors` makes it one clean error where the dataset is read
                raise DataError(f"{path}:{number}: malformed SuperGLUE line ({type(e).__name__}: {e})") from e
            yield from examples


# ---------------------------------------------------------------------------------------------------------------
# Split-specific examples (train) and WSC's candidates


def _copa_train(ds):
    """Each example, then its mirror (choices swapped, label flipped), as the official CopaProcessor."""

    def both(ex):
        mirror = ex | {"choice1": ex["choice2"], "choice2": ex["choice1"], "label": 1 - ex["label"]}
        return tf.data.Dataset.from_tensors(ex).concatenate(tf.data.Dataset.from_tensors(mirror))

    return ds.flat_map(both)


def _record_train(ds):
    """One example per gold answer: that answer, then the other (non-gold) entities in order, or 9 of them
    drawn at random where there are more (the official RecordProcessor; a seed per query here)."""

    def per_answer(ex):
        answers, entities = ex["answers"], ex["entities"]
        negatives = tf.boolean_mask(entities, ~_is_in(entities, answers))
        most = RECORD_TRAIN_CANDIDATES - 1

        def one(k, answer):
            seed = tf.stack([tf.cast(ex["idx"]["query"], tf.int64), k])
            drawn = tf.gather(negatives, tf.argsort(tf.random.stateless_uniform(tf.shape(negatives), seed)))
            chosen = tf.cond(tf.size(negatives) > most, lambda: drawn[:most], lambda: negatives)
            return ex | {"entities": tf.concat([[answer], chosen], 0), "answers": tf.reshape(answer, [1])}

        return tf.data.Dataset.from_tensor_slices((tf.range(tf.size(answers, tf.int64)), answers)).map(one)

    return ds.flat_map(per_answer)


def _mark_pronoun(text: str, index: int, pronoun: str) -> str:
    """`text` with the pronoun word at `index` between asterisks, its index repaired as the official WscProcessor
    does (off by one, or glued to the next characters). A pronoun not found is marked at `index` if in range
    (the official asserts; TFDS's mock data has random spans)."""
    words = text.split()
    if index < len(words) and words[index] != pronoun:
        for offset in (-1, 1):
            if 0 <= index + offset < len(words) and words[index + offset] == pronoun:
                index += offset
        if words[index] != pronoun and words[index].startswith(pronoun):
            words[index : index + 1] = [pronoun, words[index][len(pronoun) :]]
    if 0 <= index < len(words):
        words[index] = f"*{words[index]}*"
    return " ".join(words)


def wsc_examples(rows: list[dict], train: bool) -> list[dict]:
    """WSC examples with `marked_text` and `candidates`: the example's span1 text, then the other span1 texts
    (distinct, case-insensitively) of the examples with the same text and pronoun index; train keeps the True ones."""
    spans: dict[tuple, list[str]] = {}
    for row in rows:
        spans.setdefault((row["text"], row["span2_index"]), []).append(row["span1_text"])
    examples = []
    for row in rows:
        if train and row["label"] != 1:
            continue
        candidates = {}
        for span in [row["span1_text"], *spans[row["text"], row["span2_index"]]]:
            candidates.setdefault(span.lower(), span)
        text = _standardize_py(row["text"])
        marked = _mark_pronoun(text, row["span2_index"], row["span2_text"])
        examples.append(row | {"marked_text": marked, "candidates": list(candidates.values())})
    return examples


def in_memory_dataset(examples: list[dict], features: dict) -> tf.data.Dataset:
    """The (nested) `examples` as a dataset of `features` (`tf.TensorSpec` leaves: scalars or 1-D lists),
    from tensors in memory: an iterator over it can be saved in a checkpoint (`from_generator` cannot)."""

    def column(path, spec):
        values = [functools.reduce(lambda d, key: d[key], path, ex) for ex in examples]
        if spec.shape.rank == 0:
            return tf.constant(values, spec.dtype, shape=[len(values)])
        return (
            tf.ragged.constant(values, spec.dtype, ragged_rank=1, row_splits_dtype=tf.int64)
            if values
            else (tf.RaggedTensor.from_row_lengths(tf.zeros([0], spec.dtype), tf.zeros([0], tf.int64)))
        )

    def columns(tree, path=()):
        if isinstance(tree, dict):
            return {key: columns(value, (*path, key)) for key, value in tree.items()}
        return column(path, tree)

    return tf.data.Dataset.from_tensor_slices(columns(features))


def _read_jsonl_file(path: str, task: str) -> tuple[dict, ...]:
    """All examples of an original SuperGLUE file, read once per process while the file is unchanged."""
    stat = tf.io.gfile.stat(path)
    return _read_jsonl_version(path, task, stat.mtime_nsec, stat.length)


@functools.cache
def _read_jsonl_version(path: str, task: str, mtime_nsec: int, length: int) -> tuple[dict, ...]:
    del mtime_nsec, length  # the cache key: a changed file is read again
    return tuple(read_jsonl(path, _task(task).rows))


def _as_python(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------------------------------------------------------
# Tasks

_S, _I32, _I64 = (tf.TensorSpec([], dtype) for dtype in (tf.string, tf.int32, tf.int64))
_STRINGS = tf.TensorSpec([None], tf.string)


def _spec(texts: tuple[str, ...], ints: tuple[str, ...] = (), **others) -> dict:
    return {key: _S for key in texts} | {key: _I32 for key in ints} | {"idx": _I32, "label": _I64} | others


@dataclasses.dataclass(frozen=True)
class _Task:
    tfds: str  # TFDS config of super_glue
    pattern: Callable  # (example, pattern id) -> pieces
    pattern_ids: tuple[int, ...]
    features: dict  # TFDS features: tf.TensorSpec of each
    rows: Callable[[dict], list[dict]]  # one original jsonl line -> examples with the features
    words: Callable[[int], tuple[str, ...]] | None = None  # pattern id -> verbalizer words, by label
    candidates: Callable | None = None
    label: Callable | None = None
    group: Callable | None = None
    answers: Callable | None = None
    prepare: Callable | None = None  # example -> example, every split, before `train`
    train: Callable | None = None  # tf.data transform of the train split


_RTE_LABELS = ("entailment", "not_entailment")
_CB_LABELS = ("entailment", "contradiction", "neutral")
_NLI = ("premise", "hypothesis")
_COPA = ("premise", "choice1", "choice2", "question")
_WIC, _WIC_INTS = ("word", "sentence1", "sentence2"), ("start1", "start2", "end1", "end2")
_MULTIRC_IDX = {"paragraph": _I32, "question": _I32, "answer": _I32}
_RECORD = {"passage": _S, "query": _S, "entities": _STRINGS, "answers": _STRINGS}
_SPEC = {
    "boolq": _Task(
        tfds="boolq",
        pattern=_boolq,
        pattern_ids=(0, 1, 2, 3, 4, 5),
        features=_spec(("question", "passage")),
        rows=_flat(("question", "passage")),
        words=_boolq_words,
    ),
    "cb": _Task(
        tfds="cb",
        pattern=_cb,
        pattern_ids=(0, 1, 2, 3, 4),
        features=_spec(_NLI),
        rows=_flat(_NLI, names=_CB_LABELS),
        words=_cb_words,
    ),
    "copa": _Task(
        tfds="copa",
        pattern=_copa,
        pattern_ids=(0, 1),
        features=_spec(_COPA),
        rows=_flat(_COPA),
        candidates=lambda ex: " " + tf.stack(_copa_choices(ex)),
        train=_copa_train,
    ),
    "multirc": _Task(
        tfds="multirc",
        pattern=_multirc,
        pattern_ids=(0, 1, 2, 3, 4),
        features=_spec(("paragraph", "question", "answer"), idx=_MULTIRC_IDX),
        rows=_multirc_rows,
        words=_multirc_words,
        group=lambda ex: _question_id(ex["idx"]["paragraph"], ex["idx"]["question"]),
    ),
    "record": _Task(
        tfds="record",
        pattern=_record,
        pattern_ids=(0,),
        features=_RECORD | {"idx": {"passage": _I32, "query": _I32}},
        rows=_record_rows,
        candidates=lambda ex: " " + ex["entities"],
        label=_first_gold,
        group=lambda ex: _question_id(ex["idx"]["passage"], ex["idx"]["query"]),
        answers=lambda ex: ex["answers"],
        prepare=_record_plain,
        train=_record_train,
    ),
    "rte": _Task(
        tfds="rte",
        pattern=_rte,
        pattern_ids=(0, 1, 2, 3, 4),
        features=_spec(_NLI),
        rows=_flat(_NLI, names=_RTE_LABELS),
        words=_rte_words,
    ),
    "wic": _Task(
        tfds="wic",
        pattern=_wic,
        pattern_ids=(0, 1, 2),
        features=_spec(_WIC, _WIC_INTS),
        rows=_flat(_WIC, _WIC_INTS),
        words=_wic_words,
    ),
    # Label 0 is the example's own span1 (candidate 0); `group` is its original label (1 True, 0 False, -1 unknown).
    "wsc": _Task(
        tfds="wsc.fixed",
        pattern=_wsc,
        pattern_ids=(0, 1, 2),
        features=_spec(("text", "span1_text", "span2_text"), ("span1_index", "span2_index")),
        rows=_wsc_rows,
        candidates=lambda ex: " " + ex["candidates"],
        label=lambda ex: tf.constant(0, tf.int32),
        group=lambda ex: ex["label"],
    ),
}

PATTERN_IDS = {task: spec.pattern_ids for task, spec in _SPEC.items()}  # the official pattern ids of each task


def _task(task: str) -> _Task:
    if task not in _SPEC:
        raise ValueError(f"Unknown SuperGLUE task {task!r}; expected one of {TASKS}.")
    return _SPEC[task]


def examples(task: str, source="tfds") -> seqio.DataSource:
    """SuperGLUE `task`'s examples with the TFDS features, every split alike, from `source`: "tfds", "jsonl:DIR"
    (DIR/train.jsonl, DIR/val.jsonl and DIR/test.jsonl if present) or a `seqio.DataSource` (returned as is)."""
    spec = _task(task)
    if isinstance(source, seqio.DataSource):
        return source
    if source == "tfds":
        splits = {split: split for split in SPLITS}
        return seqio.TfdsDataSource(tfds_name=f"super_glue/{spec.tfds}:{TFDS_VERSION}", splits=splits)
    if not (isinstance(source, str) and source.startswith("jsonl:")):
        raise ValueError(f"Unknown SuperGLUE source {source!r}; expected 'tfds', 'jsonl:DIR' or a seqio.DataSource.")
    directory = source.removeprefix("jsonl:")
    paths = {split: os.path.join(directory, f"{stem}.jsonl") for split, stem in SPLITS.items()}
    missing = [paths[s] for s in ("train", "validation") if not tf.io.gfile.exists(paths[s])]
    if missing:
        raise ValueError(f"SuperGLUE {task} source {source!r} lacks {missing}.")
    paths = {split: path for split, path in paths.items() if tf.io.gfile.exists(path)}

    def dataset_fn(split, shuffle_files, seed=None):
        del shuffle_files, seed  # one file per split: the task shuffles examples
        return in_memory_dataset(list(_read_jsonl_file(paths[split], task)), spec.features)

    return seqio.FunctionDataSource(dataset_fn, splits=list(paths))


def _split_examples(task: str, raw: seqio.DataSource) -> seqio.DataSource:
    """`raw` with the split-specific examples of the task (train transforms; WSC's candidates)."""
    spec = _task(task)

    def dataset_fn(split, shuffle_files, seed=None):
        if task == "wsc":  # the candidates need the whole split
            rows = [
                {k: _as_python(v) for k, v in row.items()}
                for row in raw.get_dataset(split, shuffle=False).as_numpy_iterator()
            ]
            signature = spec.features | {"marked_text": _S, "candidates": _STRINGS}
            prepared = [{k: ex[k] for k in signature} for ex in wsc_examples(rows, train=split == "train")]
            return in_memory_dataset(prepared, signature)
        ds = raw.get_dataset(split, shuffle=shuffle_files, seed=seed)
        ds = ds.map(spec.prepare, num_parallel_calls=tf.data.AUTOTUNE) if spec.prepare else ds
        return spec.train(ds) if split == "train" and spec.train else ds

    return seqio.FunctionDataSource(dataset_fn, splits=raw.splits)


def make_cloze(task: str, vocabulary: seqio.Vocabulary, pattern_id: int | None = None) -> cloze.Cloze:
    """The cloze questions of SuperGLUE `task` with official pattern `pattern_id` (default: the task's recipe)."""
    spec = _task(task)
    pattern_id = RECIPES[task].pattern_id if pattern_id is None else pattern_id
    if pattern_id not in spec.pattern_ids:
        raise ValueError(f"SuperGLUE {task} has no pattern {pattern_id}; expected one of {spec.pattern_ids}.")
    common = dict(pattern=functools.partial(spec.pattern, p=pattern_id), group=spec.group, answers=spec.answers)
    if spec.label:
        common["label"] = spec.label
    if spec.words is None:
        return cloze.Cloze(candidates=spec.candidates, **common)
    words = spec.words(pattern_id)
    try:
        cloze.verbalizer_ids(words, vocabulary)
    except ValueError as e:
        logging.getLogger(__name__).warning("SuperGLUE %s: %s Scoring the labels as multi-token answers.", task, e)
        return cloze.Cloze(candidates=lambda ex: tf.constant(words), **common)
    return cloze.Cloze(verbalizer=words, **common)


def register(
    task: str, vocabulary: seqio.Vocabulary, *, source="tfds", pattern_id: int | None = None, name: str | None = None
) -> str:
    """Registers (or replaces) SeqIO task `name` (default `superglue_{task}`): SuperGLUE `task` from `source`
    (see `examples`) as cloze questions of official pattern `pattern_id` (default: the task's recipe).
    Returns the task's name."""
    questions = make_cloze(task, vocabulary, pattern_id)
    name = name or f"superglue_{task}"
    cloze.register_cloze_task(name, _split_examples(task, examples(task, source)), vocabulary, questions)
    return name


def measure(name: str, split: str, seq_len: int) -> tuple[int, int]:
    """(most answers of a question, most tokens of an answer including eop) over `split` of registered task `name`:
    the smallest `max_choices` and `answer_len` for that split."""
    ds = seqio.get_mixture_or_task(name).get_dataset(
        {"inputs": seq_len}, split=split, shuffle=False, trim_output_features=False
    )
    most = ds.map(lambda ex: tf.shape(ex["choice_ids"])).reduce(tf.zeros([2], tf.int32), tf.maximum)
    return int(most[0]), int(most[1])


def finetune_config(task: str):
    """The fine-tuning config of SuperGLUE `task`: the official recipe over `config.finetune_config()`."""
    from glm_jax import config as config_lib

    if task not in RECIPES:
        raise ValueError(f"Unknown SuperGLUE task {task!r}; known: {', '.join(TASKS)}.")
    r = RECIPES[task]
    c = config_lib.finetune_config()
    c.finetune.update(
        superglue=task, metric=task, epochs=r.epochs, pattern_id=r.pattern_id, max_choices=r.max_choices,
        max_train_choices=r.max_train_choices,
        answer_len=r.answer_len, length_penalty=r.length_penalty, loss=r.loss,
    )  # fmt: skip
    c.data.update(seq_len=r.seq_len, batch_size=r.batch_size)
    c.optimizer.peak_lr = r.lr
    return c
