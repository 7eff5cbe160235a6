"""Batches of the data contract from a registered SeqIO task, per host, with a resumable position."""

import importlib

import numpy as np
import seqio

from glm_jax.data import feature_converter, tasks  # noqa: F401  (registers the built-in tasks)


def import_task_module(name: str) -> None:
    """Imports a user module that registers SeqIO tasks (`data.task_module`)."""
    if not name:
        return
    try:
        importlib.import_module(name)
    except ImportError as error:
        raise ValueError(f"data.task_module={name!r} could not be imported: {error}") from error


def get_task(name: str) -> seqio.Task:
    try:
        return seqio.get_mixture_or_task(name)
    except ValueError as error:
        raise ValueError(
            f"data.task={name!r} is not registered; known tasks: {sorted(seqio.TaskRegistry.names())}. "
            "Register yours in a module and pass it as --config.data.task_module."
        ) from error


def get_dataset(
    task: str, split: str, seq_len: int, *, seed: int, shuffle: bool, repeat: bool, shard_info=None, pack=False
):
    """Unbatched rows of `[seq_len]` contract fields of this host's shard (examples packed if `pack`)."""
    return seqio.get_dataset(
        task,
        dict.fromkeys(feature_converter.TASK_FIELDS, seq_len),
        feature_converter.GLMFeatureConverter(pack=pack),
        dataset_split=split,
        shuffle=shuffle,
        num_epochs=None if repeat else 1,
        shard_info=shard_info,
        seed=seed,
        verbose=False,
    )


class TrainStream:
    """An endless iterator of host batches that knows how many it has produced (`position`).

    Restarting with the same arguments and a saved `position` continues the same stream: the
    pipeline is deterministic for a seed, and the first `position` batches are skipped.
    """

    def __init__(self, task, seq_len, host_batch, *, seed, shard_info=None, position=0, pack=False):
        ds = get_dataset(task, "train", seq_len, seed=seed, shuffle=True, repeat=True, shard_info=shard_info, pack=pack)
        self.position = position
        self._iterator = ds.batch(host_batch, drop_remainder=True).skip(position).prefetch(2).as_numpy_iterator()

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = next(self._iterator)
        self.position += 1
        return batch


def fixed_batches(task, split, seq_len, host_batch, *, seed, shard_info=None, limit=0, pack=False):
    """All (or the first `limit`) batches of a split, in order; the last padded with empty rows."""
    ds = get_dataset(task, split, seq_len, seed=seed, shuffle=False, repeat=False, shard_info=shard_info, pack=pack)
    batches = []
    for batch in ds.batch(host_batch).as_numpy_iterator():
        missing = host_batch - len(batch["inputs"])
        batches.append({k: np.pad(v, ((0, missing), (0, 0))) for k, v in batch.items()})
        if limit and len(batches) == limit:
            break
    if not batches:
        raise ValueError(f"Split {split!r} of task {task!r} produced no examples.")
    return batches
