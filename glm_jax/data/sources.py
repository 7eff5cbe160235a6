"""SeqIO data sources of documents (`{'text': string}`): the default corpus, TFDS, text files."""

import json

import seqio
import tensorflow as tf

from glm_jax.data import corpus


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
    """Plain-text files, one document per file (`split → glob`); files are split over hosts."""

    def read(path):
        return tf.data.Dataset.from_tensors({"text": tf.io.read_file(path)})

    return seqio.FileDataSource(read_file_fn=read, split_to_filepattern=split_to_pattern)


def jsonl_examples(split_to_pattern: dict[str, str], features: dict, keys: dict[str, str] | None = None):
    """JSON-lines files, one example per line (`split → glob`); files are split over hosts.

    `features` maps each field to its tf dtype (scalars), read from the line's key `keys[field]`
    (default: the field's name). A line that is not JSON or lacks a key fails with file and line.
    """
    names = tuple(features)
    keys = {name: (keys or {}).get(name, name) for name in names}

    def rows(path):
        path = path.decode()
        with tf.io.gfile.GFile(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    yield tuple(row[keys[name]] for name in names)
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    message = f"{path}:{number}: not a JSON object with keys {list(keys.values())} ({error})"
                    raise ValueError(message) from None

    def read(path):
        spec = tuple(tf.TensorSpec([], features[name]) for name in names)
        ds = tf.data.Dataset.from_generator(rows, output_signature=spec, args=(path,))
        return ds.map(lambda *values: dict(zip(names, values, strict=True)))

    return seqio.FileDataSource(read_file_fn=read, split_to_filepattern=split_to_pattern)


def jsonl_files(split_to_pattern: dict[str, str], field: str = "text") -> seqio.FileDataSource:
    """JSON-lines files, one document per line under `field` (`split → glob`); files are split over hosts."""
    return jsonl_examples(split_to_pattern, {"text": tf.string}, keys={"text": field})
