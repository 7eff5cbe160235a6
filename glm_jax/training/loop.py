"""The pretraining loop behind `python -m glm_jax.train`: resume, train, evaluate, checkpoint."""

import functools
import itertools

import jax
import seqio
from absl import logging

from glm_jax import cli
from glm_jax import config as config_lib
from glm_jax.data import pipeline, vocab
from glm_jax.training import checkpoints, distributed, flops, preemption, sharding, validation
from glm_jax.training import stops as stops_lib
from glm_jax.training import workdir as workdir_lib
from glm_jax.training.metrics_log import MetricsLog


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


def run(c, workdir: str) -> dict:
    """Trains to `train.steps` (resuming if the workdir has checkpoints); returns the final metrics."""
    distributed.initialize(c.distributed)
    config_lib.validate(c, jax.device_count())
    workdir = workdir_lib.absolute(workdir)
    pipeline.import_task_module(c.data.task_module)
    task = pipeline.get_task(c.data.task)
    mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor)
    trainer, model_vocab = workdir_lib.trainer_for(c, mesh)
    _check_task_vocabulary(task, model_vocab)
    checkpoints.check_or_write_config(workdir, c)
    glm_config = trainer.glm_config
    host_batch = c.data.batch_size // jax.process_count()
    cli.say(
        f"GLM {glm_config.num_layers}L/{glm_config.hidden}h/{glm_config.heads} heads: {trainer.num_params():,} "
        f"parameters; mesh {dict(mesh.shape)}; batch {c.data.batch_size} x {c.data.seq_len}"
    )

    data = dict(seed=c.train.seed, shard_info=_shard_info(), host_split=c.data.host_split, pack=c.data.pack)
    train_stream = functools.partial(pipeline.TrainStream, c.data.task, c.data.seq_len, host_batch, **data)
    eval_batches = pipeline.fixed_batches(
        c.data.task, c.data.eval_split, c.data.seq_len, host_batch, limit=c.data.eval_batches, **data
    )
    mngr, log = checkpoints.manager(workdir, c), None
    try:
        state, stream = _start(c, trainer, mngr, train_stream)
        peak, peak_source = flops.peak_flops_per_device(c.train.peak_flops)
        cli.say(f"MFU is measured against {peak / 1e12:.2f} TFLOP/s per device ({peak_source})")
        log = MetricsLog(workdir, c.train.steps, peak, start_step=int(state.step))
        with preemption.StopSignals(mngr) as signals:
            state = _train(c, trainer, mngr, state, stream, eval_batches, log, signals)
        final = _final_scores(c, trainer, state.params, train_stream, eval_batches)
        log.write(c.train.steps, final)
        checkpoints.finish(mngr)  # the last save committed, or its failure raised
    finally:  # saves in flight are committed (or reported) and the logs flushed, also on an early stop
        checkpoints.close_quietly(mngr)
        if log is not None:
            log.close()
    return final


def _final_scores(c, trainer, params, train_stream, eval_batches) -> dict:
    """Evaluation loss and accuracy, and the unigram baseline's cross-entropy on the same targets."""
    final = validation.evaluate(trainer, params, eval_batches)
    # Target frequencies over the first batches of the training stream (this host's shard).
    train_batches = itertools.islice(train_stream(), c.data.unigram_batches)
    counts = validation.unigram_counts(train_batches, trainer.glm_config.vocab_size)
    final["unigram_ce"] = validation.unigram_cross_entropy(counts, eval_batches)
    scored = f"Part B targets of the {c.data.eval_split} split"
    cli.say(
        f"final step {c.train.steps} | eval_loss {final['eval_loss']:.4f} ({scored}) | unigram_ce "
        f"{final['unigram_ce']:.4f} | eval_accuracy {final['eval_accuracy']:.4f}"
    )
    return final


def _start(c, trainer, mngr, train_stream):
    """(state, stream) of the latest checkpoint (its input iterator restored in place), or fresh ones."""
    stream = train_stream()
    restored = checkpoints.restore_latest(
        mngr, trainer.abstract_state, stream=stream, init_opt_state=lambda p: trainer.state_from_params(p).opt_state
    )
    if restored is None:
        return trainer.init_state(c.train.seed), stream
    state, position = restored
    if stream.position != position:  # a checkpoint without the iterator's state: replay the stream
        cli.say(f"the checkpoint holds no input state of this process: skipping {position} batches")
        stream = train_stream(position=position)
    cli.say(f"resumed from step {int(state.step)} (data position {position} batches)")
    return state, stream


def _train(c, trainer, mngr, state, stream, eval_batches, log, signals):
    """Steps to `train.steps`; checks each step's finiteness one step late (after dispatching the
    next), and before anything that keeps the state (checkpoints, evaluations, a stop)."""
    glm_config = trainer.glm_config
    tokens_per_step = c.data.batch_size * c.data.seq_len
    step = int(state.step)
    pending, skipped = None, 0  # (step, metrics) not yet checked; non-finite steps in a row
    while step < c.train.steps:
        batch = trainer.device_batch(next(stream))
        state, metrics = trainer.train_step(state, batch)
        step += 1
        if pending is not None:
            skipped = _check_finite(c, *pending, skipped)
        pending = (step, metrics)
        logs = step % c.train.log_every == 0 or step == c.train.steps
        evaluates = step % c.train.eval_every == 0 and step < c.train.steps
        stops = signals.should_stop(step)
        saves = stops or step % c.train.checkpoint_every == 0 or step == c.train.steps
        if logs or evaluates or saves:
            skipped, pending = _check_finite(c, *pending, skipped), None
        if logs:
            model_flops = flops.train_flops(
                glm_config,
                tokens_per_step,
                trainer.visible_pairs(batch),
                trainer.logit_tokens(c.data.batch_size, c.data.seq_len),
            )
            scalars = jax.device_get(metrics)
            scalars.pop("nonfinite")
            log.train(step, scalars, tokens_per_step, model_flops)
        if evaluates:
            scores = validation.evaluate(trainer, state.params, eval_batches)
            log.write(step, scores)
            cli.say(f"step {step} | eval_loss {scores['eval_loss']:.4f} | eval_accuracy {scores['eval_accuracy']:.4f}")
            log.restart_clock()
        if saves:
            checkpoints.save(mngr, step, state, stream.position, stream=stream)
        if stops:
            checkpoints.finish(mngr)
            raise stops_lib.Preempted(step, signals.received)
    if pending is not None:
        _check_finite(c, *pending, skipped)
    return state


def _check_finite(c, step: int, metrics: dict, skipped: int) -> int:
    """Non-finite steps in a row after `step`; raises `Diverged` when training must stop."""
    if not bool(metrics["nonfinite"]):
        return 0
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if c.train.on_nonfinite == "stop":
        raise stops_lib.Diverged(step, values, "train.on_nonfinite=stop")
    skipped += 1
    if skipped >= c.train.max_skipped_steps:
        raise stops_lib.Diverged(step, values, f"{skipped} updates skipped in a row (train.max_skipped_steps)")
    logging.warning("step %d: non-finite loss or norm, update skipped (%d in a row)", step, skipped)
    cli.say(f"step {step}: non-finite loss or norm ({values['loss']:.4g}); its update is skipped")
    return skipped
