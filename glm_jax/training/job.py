"""What a kind of run plugs into the engine's one loop (`loop.run`): the `Job` protocol.

The loop owns everything a run must survive and everything it must keep exact: resuming from the
latest good checkpoint with the input stream's iterator state, the signal stop (exit 75, the same
step on every host), the non-finite policy, metrics and TensorBoard logs cut back on resume, clean
save errors, and closing it all. A job says only what differs between pretraining and each
fine-tuning kind:

- its `trainer` (the model, optimizer and objective on the mesh) and its step-0 state;
- its training stream (`Stream`: host batches it can resume);
- its evaluation (scores to log, written predictions) and what follows one (keeping the best);
- how the run ends (final scores) and what to close.

Pretraining is `glm_jax.pretraining.PretrainingJob`; the fine-tuning kinds are in
`glm_jax.downstream` (cloze, seq2seq). Levanter's `Trainer` hooks and T5X's actions are the same idea.
"""

from typing import Protocol

from glm_jax.training.trainer import Trainer, TrainState


class Stream(Protocol):
    """Host batches of training data that a checkpoint can resume (`glm_jax.data.pipeline.BatchStream`)."""

    position: int  # batches drawn so far

    def __next__(self) -> dict: ...

    def save_items(self) -> dict:
        """Orbax items by name that hold the stream's own state (its tf.data iterator)."""

    def restore_items(self, step_directory) -> dict:
        """The items that restore that state in place from a checkpoint step (empty if it holds none)."""

    def resumed(self, restored) -> bool:
        """Whether the restore brought the stream to the checkpoint's position (else the loop skips)."""


class Job(Protocol):
    trainer: Trainer
    # Also write a checkpoint at every evaluation (fine-tuning: its best/ and predictions follow one).
    checkpoint_at_evaluation: bool
    # Evaluate after the last step too (fine-tuning); pretraining's `finish` scores the end instead.
    evaluate_at_end: bool
    # Where `fresh_state`'s parameters come from: {"workdir": an --init workdir} or {"seed": train.seed}. A run
    # with frozen parameters records it, with their checksums, in its checkpoints (`frozen_base`).
    base: dict

    def fresh_state(self) -> TrainState:
        """The state of step 0 (fresh parameters, or those of an --init workdir)."""

    def train_stream(self, position: int = 0) -> Stream:
        """This process's training batches from `position` on (0: a fresh stream a checkpoint may restore)."""

    def step_flops(self, device_batch) -> float:
        """Model FLOPs of a train step on `device_batch` (for the logged TFLOP/s and MFU)."""

    def evaluate(self, step: int, params) -> dict:
        """Scores of `params` after `step`, as scalars to log (`eval_*`); prints its line, writes predictions."""

    def after_evaluation(self, step: int, params, scores: dict) -> None:
        """What follows an evaluation (fine-tuning: keep the best parameters)."""

    def finish(self, state: TrainState, log) -> dict:
        """The run's result after its last step (pretraining: final scores, written to `log`)."""

    def close(self) -> None:
        """Releases what the job holds (checkpoint managers of its own); called whatever happened."""
