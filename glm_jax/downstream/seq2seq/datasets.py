"""The seq2seq datasets (CNN/DailyMail, XSum, Gigaword, SQuAD question generation): their text processing as
the official processors, their sources (TFDS, jsonl files, any SeqIO source) and registration."""

import dataclasses
import os
import re
from collections.abc import Callable

import seqio
import tensorflow as tf

from glm_jax.data import sources
from glm_jax.downstream.prompts import NO_PROMPTS, Prompts
from glm_jax.downstream.seq2seq.layout import Seq2Seq, register_seq2seq_task
from glm_jax.downstream.seq2seq.recipes import DATASETS, SEQ2SEQ_RECIPES
from glm_jax.downstream.superglue.text import standardize

SPLITS = ("train", "validation", "test")


# The official gigaword_detokenize's PTB brackets and HTML entities.
_GIGAWORD = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}"}
_GIGAWORD |= {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def _strip(text):
    return tf.strings.strip(text)


def _join_lines(text, joiner: str = " "):
    """Lines stripped and joined with `joiner`, empty lines dropped."""
    return tf.strings.strip(tf.strings.regex_replace(text, r"[ \t\r]*\n\s*", joiner))


UNKNOWN = "[UNK]"  # Gigaword's unknown words, as the official detokenizer writes them


def _gigaword(text):
    """The official `gigaword_detokenize`: `UNK` and `<unk>` become `[UNK]`, then PTB brackets and HTML
    entities are undone (in that order, so `&lt;unk&gt;` stays `<unk>`)."""
    text = standardize(_strip(text))
    for old, new in {"UNK": UNKNOWN, "<unk>": UNKNOWN, **_GIGAWORD}.items():
        text = tf.strings.regex_replace(text, re.escape(old), new, replace_global=True)
    return text


@dataclasses.dataclass(frozen=True)
class _Dataset:
    tfds: str  # default TFDS builder
    fields: Callable[[dict], dict]  # TFDS example -> the canonical fields
    spec: Seq2Seq  # over the canonical fields
    keys: tuple[str, ...]  # canonical fields read from jsonl, in order: (source, target[, answer])


def _summary_fields(source_key: str, target_key: str) -> Callable[[dict], dict]:
    return lambda ex: {"source": ex[source_key], "target": ex[target_key]}


def _squad_fields(ex: dict) -> dict:
    """Du et al.'s split (context_passage, answer, question) or plain SQuAD (first answer and its offset)."""
    if "answers" in ex:
        first = lambda values, empty: tf.concat([values, [empty]], 0)[0]  # noqa: E731
        return {
            "context": ex["context"],
            "answer": first(ex["answers"]["text"], ""),
            "answer_start": tf.cast(first(ex["answers"]["answer_start"], -1), tf.int32),
            "question": ex["question"],
        }
    return {"context": ex["context_passage"], "answer": ex["answer"], "question": ex["question"]}


_SUMMARY_KEYS = ("source", "target")
_DATASETS = {
    "cnn_dailymail": _Dataset(
        tfds="cnn_dailymail:3.4.0",
        fields=_summary_fields("article", "highlights"),
        spec=Seq2Seq(
            source=lambda ex: standardize(_strip(ex["source"])),
            target=lambda ex: standardize(_join_lines(ex["target"])),
            reference=lambda ex: standardize(_join_lines(ex["target"], "\n")),
        ),
        keys=_SUMMARY_KEYS,
    ),
    "xsum": _Dataset(
        tfds="xsum:1.1.0",
        fields=_summary_fields("document", "summary"),
        spec=Seq2Seq(source=lambda ex: _join_lines(ex["source"]), target=lambda ex: _join_lines(ex["target"])),
        keys=_SUMMARY_KEYS,
    ),
    "gigaword": _Dataset(
        tfds="gigaword:1.2.0",
        fields=_summary_fields("document", "summary"),
        spec=Seq2Seq(
            source=lambda ex: _gigaword(ex["source"]), target=lambda ex: _gigaword(ex["target"]), unknown=UNKNOWN
        ),
        keys=_SUMMARY_KEYS,
    ),
    "squad_qg": _Dataset(
        tfds="squad_question_generation/split_du:3.0.0",
        fields=_squad_fields,
        spec=Seq2Seq(
            source=lambda ex: ex["context"],
            target=lambda ex: ex["question"],
            answer=lambda ex: ex["answer"],
            answer_start=lambda ex: ex.get("answer_start", -1),
        ),
        keys=("context", "question", "answer"),
    ),
}

XSUM_MANUAL_FILE = "xsum-extracts-from-downloads.tar.gz"


class ManualTfdsSource(seqio.TfdsDataSource):
    """A TFDS source whose builder needs manually downloaded files: loading it unprepared fails with what to do."""

    def __init__(self, tfds_name: str, splits, instructions: str):
        super().__init__(tfds_name=tfds_name, splits=splits)
        self._instructions = instructions

    def _prepared(self) -> bool:
        try:
            return self.tfds_dataset.builder.is_prepared()
        except Exception:  # any failure to look means: not usable as it is
            return False

    def get_dataset(self, split=None, shuffle=True, seed=None, shard_info=None, **kwargs) -> tf.data.Dataset:
        try:
            return super().get_dataset(split, shuffle, seed, shard_info, **kwargs)
        except Exception as error:
            if self._prepared():
                raise
            raise FileNotFoundError(
                f"TFDS dataset {self.tfds_dataset.name} is not prepared and TFDS cannot build it by itself: "
                f"{self._instructions} ({type(error).__name__}: {error})"
            ) from error


def _xsum_instructions() -> str:
    return (
        "download and extract the XSum articles as "
        "https://github.com/EdinburghNLP/XSum/tree/master/XSum-Dataset#running-the-download-and-extraction-scripts "
        f"says, put {XSUM_MANUAL_FILE} in a directory DIR and run `tfds build xsum --manual_dir DIR` (add "
        "`--data_dir` to build it where this program reads TFDS data, by default ~/tensorflow_datasets; the build "
        "also downloads the split file XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json), or read the data with "
        "source='jsonl:DIR'"
    )


def split_files(paths: dict[str, str], what: str) -> dict[str, str]:
    """The files of `paths` (split → path) that exist; `what` (a source) lacking train or validation is an error."""
    missing = [paths[s] for s in ("train", "validation") if not tf.io.gfile.exists(paths[s])]
    if missing:
        raise ValueError(f"{what} lacks {missing}.")
    return {split: path for split, path in paths.items() if tf.io.gfile.exists(path)}


def _tfds_splits(builder: str) -> dict[str, str]:
    base = builder.split("/")[0].split(":")[0]
    return {split: split for split in SPLITS if not (base == "squad" and split == "test")}


def _dataset(dataset: str) -> _Dataset:
    if dataset not in _DATASETS:
        raise ValueError(f"Unknown seq2seq dataset {dataset!r}; expected one of {DATASETS}.")
    return _DATASETS[dataset]


def dataset_spec(dataset: str) -> Seq2Seq:
    """The `Seq2Seq` of `dataset` (its text processing), over the canonical fields of `examples`."""
    return _dataset(dataset).spec


def examples(
    dataset: str,
    source="tfds",
    *,
    source_key: str | None = None,
    target_key: str | None = None,
    answer_key: str = "answer",
) -> tuple[seqio.DataSource, list]:
    """(SeqIO source, preprocessors that give its examples the canonical fields) of `dataset` from `source`:

    - "tfds": the default builder (module docstring); "tfds:BUILDER": another builder with the same features
      (for squad_qg also plain SQuAD, e.g. "tfds:squad/v1.1:3.0.0");
    - "jsonl:DIR": `DIR/train.jsonl`, `DIR/validation.jsonl` and `DIR/test.jsonl` if present, one JSON object a
      line with string keys `source_key` / `target_key` (default "source" / "target"; for squad_qg "context" /
      "question", and `answer_key`);
    - a `seqio.DataSource` of examples with the canonical fields (summaries: source, target; squad_qg: context,
      answer, question and optionally answer_start), returned as is.

    The dataset's text processing (module docstring) applies to every source: it is part of `dataset_spec`.
    Reading an unprepared `xsum` builder fails with what to do (`tfds build xsum --manual_dir DIR`).
    """
    spec = _dataset(dataset)
    if isinstance(source, seqio.DataSource):
        return source, []
    if source == "tfds" or (isinstance(source, str) and source.startswith("tfds:")):
        builder = spec.tfds if source == "tfds" else source.removeprefix("tfds:")
        splits = _tfds_splits(builder)
        if dataset == "xsum":
            tfds_source = ManualTfdsSource(builder, splits, _xsum_instructions())
        else:
            tfds_source = seqio.TfdsDataSource(tfds_name=builder, splits=splits)
        fields = spec.fields

        def canonical(ds):
            return ds.map(fields, num_parallel_calls=tf.data.AUTOTUNE)

        return tfds_source, [canonical]
    if not (isinstance(source, str) and source.startswith("jsonl:")):
        raise ValueError(f"Unknown seq2seq source {source!r}; expected 'tfds', 'tfds:BUILDER', 'jsonl:DIR' or a "
                         "seqio.DataSource.")  # fmt: skip
    directory = source.removeprefix("jsonl:")
    paths = {split: os.path.join(directory, f"{split}.jsonl") for split in SPLITS}
    paths = split_files(paths, f"{dataset} source {source!r}")
    given = (source_key, target_key, answer_key)
    keys = {field: key or field for field, key in zip(spec.keys, given, strict=False)}
    return sources.jsonl_examples(paths, dict.fromkeys(spec.keys, tf.string), keys), []


def register(
    dataset: str,
    vocabulary: seqio.Vocabulary,
    *,
    source="tfds",
    source_len: int | None = None,
    target_len: int | None = None,
    task_mask: bool = False,
    name: str | None = None,
    source_key: str | None = None,
    target_key: str | None = None,
    answer_key: str = "answer",
    prompts: Prompts = NO_PROMPTS,
) -> str:
    """Registers (or replaces) SeqIO task `name` (default `seq2seq_{dataset}`, `_tm` added with `task_mask`):
    `dataset` (one of `DATASETS`) from `source` (see `examples`) in the official layout, Part A of at most
    `source_len` tokens (opening with `prompts.prefix` prompt tokens) and targets of at most `target_len` (default:
    the dataset's recipe). Returns the name."""
    spec = _dataset(dataset)
    recipe = SEQ2SEQ_RECIPES[dataset]
    data, preprocessors = examples(dataset, source, source_key=source_key, target_key=target_key, answer_key=answer_key)
    name = name or f"seq2seq_{dataset}" + ("_tm" if task_mask else "")
    register_seq2seq_task(
        name,
        data,
        vocabulary,
        spec.spec,
        source_len=recipe.source_len if source_len is None else source_len,
        target_len=recipe.target_len if target_len is None else target_len,
        task_mask=task_mask,
        preprocessors=preprocessors,
        prompts=prompts,
    )
    return name


def register_pairs(
    name: str,
    split_to_pattern: dict[str, str],
    vocabulary: seqio.Vocabulary,
    *,
    source_len: int,
    target_len: int,
    source_key: str = "source",
    target_key: str = "target",
    task_mask: bool = False,
) -> seqio.Task:
    """Registers (or replaces) task `name`: a user's own source → target pairs, JSON-lines files (`split → glob`)
    of objects with string keys `source_key` and `target_key`, in the summarization layout (texts as they are)."""
    data = sources.jsonl_examples(
        split_to_pattern, {"source": tf.string, "target": tf.string}, {"source": source_key, "target": target_key}
    )
    spec = Seq2Seq(source=lambda ex: ex["source"], target=lambda ex: ex["target"])
    return register_seq2seq_task(
        name, data, vocabulary, spec, source_len=source_len, target_len=target_len, task_mask=task_mask
    )
