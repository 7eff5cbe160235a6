"""The original SuperGLUE release files (`train.jsonl`, `val.jsonl`, `test.jsonl`) as examples with the TFDS
features: MultiRC one example per answer option, ReCoRD one per query with its entities and answers."""

import functools
import json
from collections.abc import Callable, Iterable

import tensorflow as tf

from glm_jax.data.sources import DataError


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


def flat_rows(fields: tuple[str, ...], ints: tuple[str, ...] = (), names: tuple[str, ...] = ()):
    """Rows of a task whose jsonl lines are flat: the text `fields`, the integer `ints`, idx and label."""

    def rows(row):
        example = {key: _text(row, key) for key in fields} | {key: int(row[key]) for key in ints}
        return [example | {"idx": int(row["idx"]), "label": _label(row, names)}]

    return rows


def wsc_rows(row):
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


def multirc_rows(row):
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


def record_rows(row):
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


def read_jsonl_file(path: str, rows: Callable[[dict], list[dict]]) -> tuple[dict, ...]:
    """All examples of an original SuperGLUE file (`rows`: a line's examples), read once per process while
    the file is unchanged."""
    stat = tf.io.gfile.stat(path)
    return _read_jsonl_version(path, rows, stat.mtime_nsec, stat.length)


@functools.cache
def _read_jsonl_version(path: str, rows, mtime_nsec: int, length: int) -> tuple[dict, ...]:
    del mtime_nsec, length  # the cache key: a changed file is read again
    return tuple(read_jsonl(path, rows))
