"""Pretraining as a job of the engine's loop (`training.loop`): a SeqIO task's stream, its held-out loss.

`run(c, workdir)` is what `python -m glm_jax.train` does: it checks the config, builds the model for
the task's vocabulary, the training stream and the fixed evaluation batches of `data.eval_split`,
and hands them to the loop. Evaluations report the Part B loss and accuracy; at the end, the same
and the unigram baseline of those targets (`training.heldout`).
"""

import functools
import itertools

import jax
import seqio

from glm_jax import config as config_lib
from glm_jax import console, continued
from glm_jax import workdir as workdir_lib
from glm_jax.data import pipeline, tasks, vocab
from glm_jax.training import checkpoints, distributed, flops, heldout, loop, sharding, workdir_lock


def _shard_info():
    return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def _check_task_vocabulary(task, model_vocab) -> None:
    """A task must emit ids of the model's vocabulary (which `data.vocabulary` may set on its own)."""
    task_vocab = task.output_features["inputs"].vocabulary
    same = task_vocab.vocab_size == model_vocab.vocab_size
    if not same or vocab.command_tokens(task_vocab) != vocab.command_tokens(model_vocab):
        raise ValueError(
            f"Task {task.name!r} uses a vocabulary of {task_vocab.vocab_size} ids, not the model's "
            f"data.vocabulary ({model_vocab.vocab_size} ids); register a task with that vocabulary "
            "(--config.data.task_module) and name it in --config.data.task."
        )


class PretrainingJob:
    """The pretraining side of the loop (`training.job.Job`)."""

    checkpoint_at_evaluation = False
    evaluate_at_end = False  # `finish` scores the end, with the unigram baseline

    def __init__(self, c, trainer):
        self.c, self.trainer = c, trainer
        host_batch = c.data.batch_size // jax.process_count()
        data = dict(seed=c.train.seed, shard_info=_shard_info(), host_split=c.data.host_split, pack=c.data.pack)
        self._stream = functools.partial(pipeline.TrainStream, c.data.task, c.data.seq_len, host_batch, **data)
        self.eval_batches = pipeline.fixed_batches(
            c.data.task, c.data.eval_split, c.data.seq_len, host_batch, limit=c.data.eval_batches, **data
        )

    @property
    def base(self) -> dict:
        return {"workdir": self.c.train.init} if self.c.train.init else {"seed": self.c.train.seed}

    def fresh_state(self):
        if self.c.train.init:  # continued pretraining: --init's parameters, grown to this model
            return continued.start_state(self.c, self.trainer)
        return self.trainer.init_state(self.c.train.seed)

    def train_stream(self, position: int = 0):
        return self._stream(position=position)

    def step_flops(self, device_batch) -> float:
        rows, length = self.c.data.batch_size, self.c.data.seq_len
        pairs = self.trainer.visible_pairs(device_batch)
        return flops.train_flops(self.trainer.glm_config, rows * length, pairs, self.trainer.logit_tokens(rows, length))

    def evaluate(self, step: int, params) -> dict:
        scores = heldout.evaluate(self.trainer, params, self.eval_batches)
        console.say(f"step {step} | eval_loss {scores['eval_loss']:.4f} | eval_accuracy {scores['eval_accuracy']:.4f}")
        return scores

    def after_evaluation(self, step: int, params, scores: dict) -> None:
        del step, params, scores  # nothing to keep: the checkpoints hold the state

    def finish(self, state, log) -> dict:
        """Evaluation loss and accuracy, and the unigram baseline's cross-entropy on the same targets."""
        c = self.c
        final = heldout.evaluate(self.trainer, state.params, self.eval_batches)
        # Target frequencies over the first batches of the training stream (this host's shard).
        train_batches = itertools.islice(self._stream(), c.data.unigram_batches)
        counts = heldout.unigram_counts(train_batches, self.trainer.glm_config.vocab_size)
        final["unigram_ce"] = heldout.unigram_cross_entropy(counts, self.eval_batches)
        kinds = sorted({getattr(o, "scored", "scored targets") for o in tasks.objectives(c.data.task)})
        scored = f"{' and '.join(kinds)} of the {c.data.eval_split} split"
        console.say(
            f"final step {c.train.steps} | eval_loss {final['eval_loss']:.4f} ({scored}) | unigram_ce "
            f"{final['unigram_ce']:.4f} | eval_accuracy {final['eval_accuracy']:.4f}"
        )
        log.write(c.train.steps, final)
        return final

    def close(self) -> None:
        pass


def run(c, workdir: str, init: str | None = None) -> dict:
    """Pretrains to `train.steps` (resuming if the workdir has checkpoints); returns the final metrics.
    `init` (default `train.init`): a workdir whose parameters the run starts from (`continued`)."""
    distributed.initialize(c.distributed)
    workdir = workdir_lib.absolute(workdir)
    c = continued.config_for(c, init or c.train.init, workdir)
    config_lib.validate(c, jax.device_count())
    with workdir_lock.WorkdirLock(workdir, "glm_jax.train"):
        return _run(c, workdir)


def _run(c, workdir: str) -> dict:
    pipeline.import_task_module(c.data.task_module)
    task = pipeline.get_task(c.data.task)
    tasks.check_model(c.data.task, c.model.causal, c.model.sentinel_positions)
    for split in ("train", c.data.eval_split):  # before any expensive work
        pipeline.check_has_text(c.data.task, split, shard_info=_shard_info() if c.data.host_split == "shard" else None)
    mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor)
    trainer, model_vocab = workdir_lib.trainer_for(c, mesh)
    _check_task_vocabulary(task, model_vocab)
    checkpoints.check_or_write_config(workdir, c)
    glm = trainer.glm_config
    console.say(
        f"GLM {glm.num_layers}L/{glm.hidden}h/{glm.heads} heads: {trainer.num_params():,} parameters; "
        f"mesh {dict(mesh.shape)}; batch {c.data.batch_size} x {c.data.seq_len}"
    )
    return loop.run(c, workdir, PretrainingJob(c, trainer))
