"""SeqIO data sources of documents (`{'text': string}`): the default corpus, TFDS, text files, JSON lines.

Bad data: a text file that is not UTF-8 text (a binary file in the glob, e.g. gzip or PNG, or "text"
holding NUL bytes) is skipped with a warning naming it; a JSON line that is not UTF-8, not JSON, not an
object or lacks a key fails as a `DataError` (a ValueError) naming `file:line` and what is wrong.

Every dataset here is plain tf.data (no `from_generator`), so an iterator over it (and over what SeqIO
and the pipeline build on it) can be saved with `tf.train.Checkpoint(iterator=...)` and restored into a
fresh iterator of the same dataset, continuing exactly. The Python ops inside (parsing a JSON line,
warning about a skipped file) are pure functions of their inputs, declared `stateful=False`: tf.data
then finds no state it cannot save.
"""

import contextlib
import json
import re
import threading

import numpy as np
import seqio
from absl import logging

from glm_jax.data import corpus
from glm_jax.data.host_tf import tf


class DataError(ValueError):
    """Bad input data: a message naming the file (and line) and what is wrong."""


_DATA_ERROR = re.compile(r"\bDataError: ([^\n]*)")


@contextlib.contextmanager
def data_errors():
    """Around iterating a tf.data dataset: a `DataError` raised inside one of its Python ops reaches
    Python as a TF error wrapping a traceback; this raises it again as the one-line `DataError`."""
    try:
        yield
    except tf.errors.OpError as error:
        match = _DATA_ERROR.search(error.message or "")
        if match is None:
            raise
        raise DataError(match.group(1)) from None


def text_problem(data: bytes) -> str:
    """Why `data` is not a text document ('' if it is one): invalid UTF-8, or a NUL byte."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start} ({error.reason})"
    nul = data.find(b"\0")
    return f"not text: a NUL byte at offset {nul}" if nul >= 0 else ""


def is_text(text: tf.Tensor) -> tf.Tensor:
    """Whether a string tensor is valid UTF-8 without NUL characters, in TF ops (no Python): every invalid
    byte becomes a NUL, then one NUL is looked for."""
    checked = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace", replacement_char=0)
    return tf.strings.regex_full_match(checked, "[^\\x00]*")


def default_corpus_source() -> seqio.FunctionDataSource:
    """The embedded default corpus (`corpus.py`)."""

    def dataset_fn(split, shuffle_files, seed=None):
        ds = tf.data.Dataset.from_tensor_slices({"text": list(corpus.documents(split))})
        return ds.shuffle(len(ds), seed=seed, reshuffle_each_iteration=True) if shuffle_files else ds

    return seqio.FunctionDataSource(dataset_fn, splits=corpus.SPLITS)


def tfds_source(name: str, splits=None) -> seqio.TfdsDataSource:
    """A TFDS dataset with a 'text' feature (e.g. 'c4/en:3.1.0', 'wikipedia/20230601.en:1.0.0').

    `splits` maps our split names to TFDS split names (default: train, validation → same).
    """
    return seqio.TfdsDataSource(tfds_name=name, splits=splits or {"train": "train", "validation": "validation"})


def text_files(split_to_pattern: dict[str, str]) -> seqio.FileDataSource:
    """Plain-text files, one document per file (`split → glob`); files are split over hosts.

    A file that is not UTF-8 text (or holds a NUL byte) is skipped, with one warning per file naming it
    and the count so far; the source's `skipped_files` holds the names of those skipped.
    """
    skipped: set[str] = set()
    lock = threading.Lock()

    def warn(path, data):
        path = path.decode()
        with lock:
            if path not in skipped:
                skipped.add(path)
                logging.warning(
                    "Skipping %s: %s; %d text file(s) skipped so far.", path, text_problem(data), len(skipped)
                )
        return np.bool_(False)

    def read(path):
        ds = tf.data.Dataset.from_tensors({"text": tf.io.read_file(path)})

        def keep(example):
            def skip():  # logs, once per file; a pure function of the file otherwise
                return tf.ensure_shape(tf.numpy_function(warn, [path, example["text"]], tf.bool, stateful=False), [])

            return tf.cond(is_text(example["text"]), lambda: tf.constant(True), skip)

        return ds.filter(keep)

    source = seqio.FileDataSource(read_file_fn=read, split_to_filepattern=split_to_pattern)
    source.skipped_files = skipped
    return source


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), "null")


def _feature_value(value, dtype: tf.DType, where: str):
    """`value` (a line's JSON value) as a numpy scalar of `dtype`; a DataError if it is not one."""
    if dtype == tf.string:
        if not isinstance(value, str):
            raise DataError(f"{where} holds {_json_type(value)}, not a string")
        if "\0" in value:
            raise DataError(f"{where} holds a NUL character (binary data?)")
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise DataError(f"{where} holds an unpaired surrogate {value[error.start]!r}, not text") from None
    kind, expected = (
        ("boolean", bool) if dtype == tf.bool
        else ("integer", int) if dtype.is_integer
        else ("number", (int, float)) if dtype.is_floating
        else ("value", object)
    )  # fmt: skip
    if not isinstance(value, expected) or (isinstance(value, bool) and dtype != tf.bool):
        raise DataError(
            f"{where} holds {_json_type(value)}, not {'an' if kind == 'integer' else 'a'} {kind} ({dtype.name})"
        )
    try:
        return np.array(value, dtype=dtype.as_numpy_dtype)
    except (OverflowError, ValueError, TypeError):
        raise DataError(f"{where} holds {value!r}, out of range for {dtype.name}") from None


def parse_json_line(path: bytes, number: int, line: bytes, fields) -> tuple:
    """The values of `fields` ((name, key, tf dtype) triples) in JSON line `number` of file `path`;
    a DataError naming `path:number` and what is wrong if the line is not such a JSON object."""
    where = f"{path.decode(errors='replace')}:{int(number)}"
    if number == 1 and line.startswith(b"\xef\xbb\xbf"):  # a byte-order mark
        line = line[3:]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = line[error.start]
        raise DataError(
            f"{where}: not UTF-8 text: byte 0x{byte:02x} at column {error.start + 1} ({error.reason})"
        ) from None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        early = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated")
        ends = " (the line ends early: truncated?)" if early else ""
        raise DataError(
            f"{where}: not JSON: {error.msg} (column {error.colno}){ends}; it starts {text[:40]!r}"
        ) from None
    keys = [key for _, key, _ in fields]
    if not isinstance(row, dict):
        raise DataError(f"{where}: not a JSON object with keys {keys}: {_json_type(row)}")
    values = []
    for _, key, dtype in fields:
        if key not in row:
            held = list(row)[:10] + (["..."] if len(row) > 10 else [])
            raise DataError(f"{where}: not a JSON object with keys {keys}: no key {key!r} (its keys: {held})")
        values.append(_feature_value(row[key], dtype, f"{where}: key {key!r}"))
    return tuple(values)


def jsonl_examples(split_to_pattern: dict[str, str], features: dict, keys: dict[str, str] | None = None):
    """JSON-lines files, one example per line (`split → glob`); files are split over hosts.

    `features` maps each field to its tf dtype (scalars), read from the line's key `keys[field]`
    (default: the field's name). Blank lines are skipped. A line that is not UTF-8, not JSON, not an
    object, lacks a key or holds a value of another type (or a NUL character in a string) fails with a
    `DataError` naming `file:line` (see `data_errors` for catching it where the dataset is iterated).
    """
    names = tuple(features)
    fields = tuple((name, (keys or {}).get(name, name), tf.as_dtype(features[name])) for name in names)

    def parse(path, number, line):
        values = tf.numpy_function(
            lambda *args: parse_json_line(*args, fields),
            [path, number, line],
            [dtype for _, _, dtype in fields],
            stateful=False,  # a pure function of the line: iterators over it can be saved
        )
        return {name: tf.ensure_shape(value, []) for name, value in zip(names, values, strict=True)}

    def read(path):
        lines = tf.data.TextLineDataset(path).enumerate(start=1)
        lines = lines.filter(lambda number, line: tf.strings.length(tf.strings.strip(line)) > 0)
        return lines.map(lambda number, line: parse(path, number, line))

    return seqio.FileDataSource(read_file_fn=read, split_to_filepattern=split_to_pattern)


def jsonl_files(split_to_pattern: dict[str, str], field: str = "text") -> seqio.FileDataSource:
    """JSON-lines files, one document per line under `field` (`split → glob`); files are split over hosts."""
    return jsonl_examples(split_to_pattern, {"text": tf.string}, keys={"text": field})
