"""The SuperGLUE tasks as SeqIO tasks of cloze questions: one table of what each task is (TFDS features,
jsonl rows, pattern, answers, split transforms), its examples from TFDS, jsonl files or any source, and
registration."""

import dataclasses
import functools
import logging
import os
from collections.abc import Callable

import seqio
import tensorflow as tf

from glm_jax.downstream import cloze
from glm_jax.downstream.prompts import NO_PROMPTS, Prompts
from glm_jax.downstream.superglue import jsonl, patterns, splits
from glm_jax.downstream.superglue.recipes import SUPERGLUE_RECIPES, TASKS
from glm_jax.downstream.superglue.text import question_id

SPLITS = {"train": "train", "validation": "val", "test": "test"}  # our split -> original file stem
TFDS_VERSION = "1.0.2"

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
        pattern=patterns.boolq,
        pattern_ids=(0, 1, 2, 3, 4, 5),
        features=_spec(("question", "passage")),
        rows=jsonl.flat_rows(("question", "passage")),
        words=patterns.boolq_words,
    ),
    "cb": _Task(
        tfds="cb",
        pattern=patterns.cb,
        pattern_ids=(0, 1, 2, 3, 4),
        features=_spec(_NLI),
        rows=jsonl.flat_rows(_NLI, names=_CB_LABELS),
        words=patterns.cb_words,
    ),
    "copa": _Task(
        tfds="copa",
        pattern=patterns.copa,
        pattern_ids=(0, 1),
        features=_spec(_COPA),
        rows=jsonl.flat_rows(_COPA),
        candidates=lambda ex: " " + tf.stack(patterns.copa_choices(ex)),
        train=splits.copa_train,
    ),
    "multirc": _Task(
        tfds="multirc",
        pattern=patterns.multirc,
        pattern_ids=(0, 1, 2, 3, 4),
        features=_spec(("paragraph", "question", "answer"), idx=_MULTIRC_IDX),
        rows=jsonl.multirc_rows,
        words=patterns.multirc_words,
        group=lambda ex: question_id(ex["idx"]["paragraph"], ex["idx"]["question"]),
    ),
    "record": _Task(
        tfds="record",
        pattern=patterns.record,
        pattern_ids=(0,),
        features=_RECORD | {"idx": {"passage": _I32, "query": _I32}},
        rows=jsonl.record_rows,
        candidates=lambda ex: " " + ex["entities"],
        label=patterns.first_gold,
        group=lambda ex: question_id(ex["idx"]["passage"], ex["idx"]["query"]),
        answers=lambda ex: ex["answers"],
        prepare=splits.record_plain,
        train=splits.record_train,
    ),
    "rte": _Task(
        tfds="rte",
        pattern=patterns.rte,
        pattern_ids=(0, 1, 2, 3, 4),
        features=_spec(_NLI),
        rows=jsonl.flat_rows(_NLI, names=_RTE_LABELS),
        words=patterns.rte_words,
    ),
    "wic": _Task(
        tfds="wic",
        pattern=patterns.wic,
        pattern_ids=(0, 1, 2),
        features=_spec(_WIC, _WIC_INTS),
        rows=jsonl.flat_rows(_WIC, _WIC_INTS),
        words=patterns.wic_words,
    ),
    # Label 0 is the example's own span1 (candidate 0); `group` is its original label (1 True, 0 False, -1 unknown).
    "wsc": _Task(
        tfds="wsc.fixed",
        pattern=patterns.wsc,
        pattern_ids=(0, 1, 2),
        features=_spec(("text", "span1_text", "span2_text"), ("span1_index", "span2_index")),
        rows=jsonl.wsc_rows,
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
        return jsonl.in_memory_dataset(list(jsonl.read_jsonl_file(paths[split], spec.rows)), spec.features)

    return seqio.FunctionDataSource(dataset_fn, splits=list(paths))


def split_examples(task: str, raw: seqio.DataSource, *, wsc_true_only: bool = True) -> seqio.DataSource:
    """`raw` with the split-specific examples of the task (train transforms; WSC's candidates and marked
    text). `wsc_true_only`: WSC's train split keeps its True examples only (the cloze recipe; the official
    classifier trains on them all)."""
    spec = _task(task)

    def dataset_fn(split, shuffle_files, seed=None):
        if task == "wsc":  # the candidates need the whole split
            rows = [
                {k: splits.as_python(v) for k, v in row.items()}
                for row in raw.get_dataset(split, shuffle=False).as_numpy_iterator()
            ]
            signature = spec.features | {"marked_text": _S, "candidates": _STRINGS}
            true_only = wsc_true_only and split == "train"
            prepared = [{k: ex[k] for k in signature} for ex in splits.wsc_examples(rows, train=true_only)]
            return jsonl.in_memory_dataset(prepared, signature)
        ds = raw.get_dataset(split, shuffle=shuffle_files, seed=seed)
        ds = ds.map(spec.prepare, num_parallel_calls=tf.data.AUTOTUNE) if spec.prepare else ds
        return spec.train(ds) if split == "train" and spec.train else ds

    return seqio.FunctionDataSource(dataset_fn, splits=raw.splits)


def make_cloze(task: str, vocabulary: seqio.Vocabulary, pattern_id: int | None = None) -> cloze.Cloze:
    """The cloze questions of SuperGLUE `task` with official pattern `pattern_id` (default: the task's recipe)."""
    spec = _task(task)
    pattern_id = SUPERGLUE_RECIPES[task].pattern_id if pattern_id is None else pattern_id
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
    task: str,
    vocabulary: seqio.Vocabulary,
    *,
    source="tfds",
    pattern_id: int | None = None,
    name: str | None = None,
    prompts: Prompts = NO_PROMPTS,
) -> str:
    """Registers (or replaces) SeqIO task `name` (default `superglue_{task}`): SuperGLUE `task` from `source`
    (see `examples`) as cloze questions of official pattern `pattern_id` (default: the task's recipe), with the
    continuous prompt tokens `prompts` in its spots. Returns the task's name."""
    questions = make_cloze(task, vocabulary, pattern_id)
    name = name or f"superglue_{task}"
    raw = split_examples(task, examples(task, source))
    cloze.register_cloze_task(name, raw, vocabulary, questions, prompts=prompts)
    return name


def measure(name: str, split: str, seq_len: int) -> tuple[int, int]:
    """(most answers of a question, most tokens of an answer including eop) over `split` of registered task `name`:
    the smallest `max_choices` and `answer_len` for that split."""
    ds = seqio.get_mixture_or_task(name).get_dataset(
        {"inputs": seq_len}, split=split, shuffle=False, trim_output_features=False
    )
    most = ds.map(lambda ex: tf.shape(ex["choice_ids"])).reduce(tf.zeros([2], tf.int32), tf.maximum)
    return int(most[0]), int(most[1])
