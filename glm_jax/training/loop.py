"""The pretraining loop behind `python -m glm_jax.train`: resume, train, evaluate, checkpoint."""

import functools
import itertools

import jax
import seqio

from glm_jax import cli
from glm_jax import config as config_lib
from glm_jax.data import pipeline, vocab
from glm_jax.training import checkpoints, distributed, flops, sharding, validation
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

    mngr = checkpoints.manager(workdir, c)
    restored = checkpoints.restore_latest(mngr, trainer.abstract_state)
    if restored is None:
        state, position = trainer.init_state(c.train.seed), 0
    else:
        state, position = restored
        cli.say(f"resumed from step {int(state.step)} (data position {position} batches)")
    data = dict(seed=c.train.seed, shard_info=_shard_info(), host_split=c.data.host_split, pack=c.data.pack)
    train_stream = functools.partial(pipeline.TrainStream, c.data.task, c.data.seq_len, host_batch, **data)
    stream = train_stream(position=position)
    eval_batches = pipeline.fixed_batches(
        c.data.task, c.data.eval_split, c.data.seq_len, host_batch, limit=c.data.eval_batches, **data
    )

    peak, peak_source = flops.peak_flops_per_device(c.train.peak_flops)
    cli.say(f"MFU is measured against {peak / 1e12:.2f} TFLOP/s per device ({peak_source})")
    log = MetricsLog(workdir, c.train.steps, peak)
    tokens_per_step = c.data.batch_size * c.data.seq_len
    step = int(state.step)
    while step < c.train.steps:
        batch = trainer.device_batch(next(stream))
        state, metrics = trainer.train_step(state, batch)
        step += 1
        if step % c.train.log_every == 0 or step == c.train.steps:
            model_flops = flops.train_flops(glm_config, tokens_per_step, trainer.visible_pairs(batch))
            log.train(step, jax.device_get(metrics), tokens_per_step, model_flops)
        if step % c.train.eval_every == 0 and step < c.train.steps:
            scores = validation.evaluate(trainer, state.params, eval_batches)
            log.write(step, scores)
            cli.say(f"step {step} | eval_loss {scores['eval_loss']:.4f} | eval_accuracy {scores['eval_accuracy']:.4f}")
            log.restart_clock()
        if step % c.train.checkpoint_every == 0 or step == c.train.steps:
            checkpoints.save(mngr, step, state, stream.position)

    final = validation.evaluate(trainer, state.params, eval_batches)
    # Target frequencies over the first batches of the training stream (this host's shard).
    counts = validation.unigram_counts(itertools.islice(train_stream(), c.data.unigram_batches), glm_config.vocab_size)
    final["unigram_ce"] = validation.unigram_cross_entropy(counts, eval_batches)
    log.write(step, final)
    cli.say(
        f"final step {step} | eval_loss {final['eval_loss']:.4f} (Part B targets of the {c.data.eval_split} split)"
        f" | unigram_ce {final['unigram_ce']:.4f} | eval_accuracy {final['eval_accuracy']:.4f}"
    )
    mngr.wait_until_finished()
    mngr.close()
    log.close()
    return final
