"""Batches of the data contract from a registered SeqIO task, per host, with a resumable position."""

import importlib
import threading

import numpy as np
import seqio
from absl import logging

from glm_jax.contract import TASK_FIELDS
from glm_jax.data import feature_converter, input_state, sources, tasks  # noqa: F401  (registers the built-in tasks)
from glm_jax.data.host_tf import tf


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


def task_examples(task: str, split: str, lengths, *, seed=None, shuffle=False, repeat=False, shard_info=None,
                  trim=True, limit: int = 0):  # fmt: skip
    """The examples of a registered task's `split`, as its preprocessors leave them (`lengths`: SeqIO's
    sequence lengths, None for none; `trim`: cut features to them; `limit`: only the first so many, if > 0,
    so that nothing after them is read or preprocessed).

    SeqIO's in-memory cache of small splits stays off: it asks the source for its split sizes,
    which a mocked TFDS builder (tests) does not know, and a run reads its data as a stream anyway.
    """
    ds = get_task(task).get_dataset(
        lengths, split=split, shuffle=shuffle, num_epochs=None if repeat else 1, shard_info=shard_info, seed=seed,
        trim_output_features=trim, try_in_mem_cache=False,
    )  # fmt: skip
    return ds.take(limit) if limit > 0 else ds


def eval_limit(data) -> int:
    """How many examples a fine-tuning evaluation reads: `data.eval_batches` batches of `data.batch_size`
    (0, every example, when data.eval_batches is 0)."""
    return data.eval_batches * data.batch_size


def check_has_text(task: str, split: str, *, shard_info=None, limit: int = 10_000) -> None:
    """Raises if `split` of `task` (each task of a mixture, this host's shard) holds no token: its documents,
    tokenized (before rows are cut), are read until the first that is not empty, at most `limit`
    of them (then a warning: rows of only [CLS] and eos would train on nothing)."""
    for sub in seqio.get_subtasks(get_task(task)):
        documents = sub.preprocess_precache(sub.source.get_dataset(split, shuffle=False, shard_info=shard_info))
        read = documents.take(limit).map(lambda ex: tf.size(ex.get("targets", ex.get("inputs"))) > 0)
        with sources.data_errors():
            seen = 0
            for has_tokens in read.as_numpy_iterator():
                seen += 1
                if has_tokens:
                    break
            else:
                if seen < limit:
                    raise ValueError(
                        f"Split {split!r} of task {sub.name!r} yields no tokens: its {seen} document(s) are all "
                        "empty; check the source's files (and text_key)."
                    )
                logging.warning("The first %d documents of split %r of task %r hold no tokens.", seen, split, sub.name)


def count(dataset) -> int:
    """How many elements a finite tf.data dataset holds (read through once)."""
    with sources.data_errors():  # bad data: one clean DataError naming file:line
        return int(dataset.reduce(np.int64(0), lambda n, _: n + 1))


def get_dataset(
    task: str, split: str, seq_len: int, *, seed: int, shuffle: bool, repeat: bool, shard_info=None, pack=False,
    example_fn=None,
):  # fmt: skip
    """Unbatched rows of `[seq_len]` contract fields of this host's shard (examples packed if `pack`),
    each task example first mapped by `example_fn` if given."""
    lengths = dict.fromkeys(TASK_FIELDS, seq_len)
    ds = task_examples(task, split, lengths, seed=seed, shuffle=shuffle, repeat=repeat, shard_info=shard_info)
    ds = ds.map(example_fn, num_parallel_calls=tf.data.AUTOTUNE) if example_fn else ds
    return feature_converter.GLMFeatureConverter(pack=pack)(ds, task_feature_lengths=lengths)


HOST_SPLITS = ("shard", "slice")


def host_batches(task, split, seq_len, host_batch, *, seed, shuffle, repeat, shard_info, host_split, pack,
                 example_fn=None):  # fmt: skip
    """Batches of `host_batch` rows for this host (`shard_info`); a final partial batch is kept.

    host_split 'shard': each host reads its own shard of the source documents (the efficient
    default; the stream depends on the number of hosts). 'slice': every host builds the global
    batches and keeps its rows, so the global stream is the same for any number of hosts.
    """
    hosts = shard_info.num_shards if shard_info else 1
    kwargs = dict(seed=seed, shuffle=shuffle, repeat=repeat, pack=pack, example_fn=example_fn)
    if host_split == "shard" or hosts == 1:
        return get_dataset(task, split, seq_len, shard_info=shard_info, **kwargs).batch(host_batch)
    start = shard_info.index * host_batch
    ds = get_dataset(task, split, seq_len, **kwargs).batch(host_batch * hosts)
    return ds.map(lambda batch: {k: v[start : start + host_batch] for k, v in batch.items()})


class BatchStream:
    """An endless iterator over a tf.data dataset of host batches that counts them (`position`);
    `finish` (optional) maps each host batch (numpy arrays) before it is returned.

    Its state goes into checkpoints (`input_state`): `save_items` / `restore_items` name the Orbax
    item that holds the tf.data iterator (restored in place). A stream tf.data cannot save continues
    instead by skipping: a new stream over the same (deterministic) dataset with the saved
    `position` skips that many batches (replaying the pipeline for them).
    """

    def __init__(self, batches, position: int = 0, finish=None):
        self.position = position
        self._finish = finish
        self.savable = True  # cleared when tf.data refuses to save this pipeline
        self._fetched = False  # whether a batch was drawn yet (see __next__)
        self._iterator = iter(batches.skip(position).prefetch(2))

    def iterator(self):
        """The tf.data iterator, to save or to restore in place (see `input_state`)."""
        return self._iterator

    def save_items(self) -> dict:
        """The checkpoint item that holds this stream's iterator state (`checkpoints.save(items=...)`)."""
        return {"input": input_state.InputSave(self)}

    def restore_items(self, step_directory) -> dict:
        """The item that restores this (fresh) stream's iterator in place from a checkpoint step, if
        the step holds one (`checkpoints.restore_latest(extra=...)`)."""
        return {"input": input_state.InputRestore(self)} if (step_directory / "input").exists() else {}

    def resumed(self, restored) -> bool:
        """After `checkpoints.restore_latest`: whether this stream's iterator was restored (it then stands
        at the checkpoint's data position); if not, the caller skips to it with a new stream."""
        if restored.items.get("input"):
            self.position = restored.position
            return True
        return False

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        # The first batch may take minutes (a shuffle buffer filling): wait for it where signals are
        # handled. Later ones are prefetched while steps run; fetching them directly costs no thread.
        batch = self._next_batch() if self._fetched else _waiting_for_signals(self._next_batch)
        self._fetched = True
        self.position += 1
        return self._finish(batch) if self._finish else batch

    def _next_batch(self) -> dict:
        with sources.data_errors():  # bad data: one clean DataError naming file:line
            return {k: v.numpy() for k, v in next(self._iterator).items()}


def _waiting_for_signals(function):
    """`function()`, called on a helper thread while the calling thread waits for it, so that signal
    handlers run during the wait: a tf.data iterator waiting for its first batch (minutes on a long
    shuffle buffer) holds the main thread in C++, where Python runs none."""
    outcome = {}

    def call():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=call, name="next-batch", daemon=True)
    thread.start()
    thread.join()  # a signal handler that raises ends the wait
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class TrainStream(BatchStream):
    """The training batches of a pretraining task (shuffled, repeated) from `position` on."""

    def __init__(self, task, seq_len, host_batch, *, seed, shard_info=None, host_split="shard", position=0, pack=False,
                 example_fn=None):  # fmt: skip
        ds = host_batches(task, "train", seq_len, host_batch, seed=seed, shuffle=True, repeat=True,
                          shard_info=shard_info, host_split=host_split, pack=pack, example_fn=example_fn)  # fmt: skip
        super().__init__(ds, position)


def fixed_batches(task, split, seq_len, host_batch, *, seed, shard_info=None, host_split="shard", limit=0, pack=False):
    """All (or the first `limit`) batches of a split, in order; the last padded with empty rows."""
    ds = host_batches(task, split, seq_len, host_batch, seed=seed, shuffle=False, repeat=False,
                      shard_info=shard_info, host_split=host_split, pack=pack)  # fmt: skip
    batches = []
    with sources.data_errors():  # bad data: one clean DataError naming file:line
        for batch in ds.as_numpy_iterator():
            missing = host_batch - len(batch["inputs"])
            batches.append({k: np.pad(v, ((0, missing), (0, 0))) for k, v in batch.items()})
            if limit and len(batches) == limit:
                break
    if not batches:
        raise ValueError(f"Split {split!r} of task {task!r} produced no examples.")
    return batches
