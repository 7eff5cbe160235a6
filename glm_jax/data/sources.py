"""SeqIO data sources built into the project."""

import seqio
import tensorflow as tf

from glm_jax.data import corpus


def default_corpus_source() -> seqio.FunctionDataSource:
    """The embedded default corpus (`corpus.py`) as a source of `{'text': string}` documents."""

    def dataset_fn(split, shuffle_files, seed=None):
        ds = tf.data.Dataset.from_tensor_slices({"text": list(corpus.documents(split))})
        return ds.shuffle(len(ds), seed=seed, reshuffle_each_iteration=True) if shuffle_files else ds

    return seqio.FunctionDataSource(dataset_fn, splits=corpus.SPLITS)
