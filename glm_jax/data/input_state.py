"""The input stream's own state in Orbax checkpoints, so a restart does not replay the pipeline.

Each process saves its tf.data iterator with `tf.train.Checkpoint` (shuffle buffers, source
positions, random-op states, prefetched batches) into `input/process_<i>_of_<n>` of the checkpoint, as
T5X does; restoring it costs the same at batch 1,000,000 as at batch 0. A stream that tf.data
cannot save (a Python generator in the pipeline) is saved as its position alone and restored by
skipping that many batches, with a warning.
"""

import dataclasses

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from glm_jax.data.host_tf import tf


def _prefix(directory: epath.Path) -> str:
    """This process's files; a run on another number of processes finds none (and skips instead)."""
    return str(directory / f"process_{jax.process_index()}_of_{jax.process_count()}")


class InputStateHandler(ocp.CheckpointHandler):
    """Saves and restores a `pipeline.BatchStream`'s tf.data iterator, one file set per process."""

    def save(self, directory: epath.Path, args: "InputSave") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if not args.stream.savable:
            return
        try:
            tf.train.Checkpoint(iterator=args.stream.iterator()).write(_prefix(directory))
        except tf.errors.FailedPreconditionError as error:  # e.g. "PyFunc is stateful"
            args.stream.savable = False
            logging.warning(
                "This input pipeline cannot be saved by tf.data (%s); a restart will skip the batches "
                "already drawn instead, which replays the pipeline for them.",
                error.message.splitlines()[0],
            )

    def restore(self, directory: epath.Path, args: "InputRestore") -> bool:
        """Restores `args.stream` in place; False if the checkpoint holds no state of this process."""
        prefix = _prefix(directory)
        if not tf.io.gfile.exists(prefix + ".index"):
            return False
        tf.train.Checkpoint(iterator=args.stream.iterator()).read(prefix).assert_consumed()
        return True


@ocp.args.register_with_handler(InputStateHandler, for_save=True)
@dataclasses.dataclass
class InputSave(ocp.args.CheckpointArgs):
    stream: object


@ocp.args.register_with_handler(InputStateHandler, for_restore=True)
@dataclasses.dataclass
class InputRestore(ocp.args.CheckpointArgs):
    stream: object
