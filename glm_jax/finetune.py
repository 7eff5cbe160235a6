"""Fine-tunes a pretrained or converted GLM on a downstream task: a cloze task (`finetune.kind=cloze`,
NLU: answers scored in a blank) or a sequence-to-sequence one (`seq2seq`: summaries, questions).

    python -m glm_jax.finetune --config configs/finetune/default_choice.py --init workdir/glm_tiny \\
        --workdir workdir/choice [--config.finetune.epochs=5] [--eval_only]

`--init` is a workdir of glm_jax.train or glm_jax.convert: the model's shape and vocabulary come
from its config.json and only its parameters are restored. Writes to `--workdir`: config.json,
`checkpoints/` (latest train state and data position, for exact resume), `best/` (the parameters
of the best evaluation by the task's main metric), TensorBoard events, `metrics.jsonl` and
`predictions_<split>.jsonl` of the last evaluation. Checkpoints are written at each evaluation
(every `finetune.eval_every_epochs` epochs). Running the same command again resumes.
`--eval_only` scores the workdir's best checkpoint on `data.eval_split` and writes its predictions;
`--config.finetune.epochs=0` scores the `--init` parameters the same way, without training (zero-shot).
"""

import time

from absl import app, flags
from ml_collections import config_flags

from glm_jax import cli

# JAX, TensorFlow and the package's training modules load in the functions, so that --help needs none.


def _scores_line(scores: dict) -> str:
    return " | ".join(f"{k} {v:.4f}" for k, v in scores.items())


def evaluate(c, task, params, data, workdir: str, step: int) -> dict:
    """Scores of `params` on the evaluation data; writes the predictions and prints the scores."""
    from etils import epath

    from glm_jax.downstream import finetuning

    scores, records = task.evaluate(params, data)
    finetuning.write_predictions(epath.Path(workdir) / f"predictions_{c.data.eval_split}.jsonl", records)
    cli.say(f"step {step} | {c.data.eval_split} ({len(records)} {task.unit}) | {_scores_line(scores)}")
    return scores


def start_state(c, trainer, init: str):
    """Step 0: the parameters of `init`'s latest checkpoint (or fresh ones with finetune.from_scratch)."""
    from glm_jax.training import checkpoints
    from glm_jax.training import workdir as workdir_lib

    if c.finetune.from_scratch:
        cli.say(f"initialized at random (seed {c.train.seed}), with the shape and vocabulary of {init}")
        return trainer.init_state(c.train.seed)
    directory = f"{workdir_lib.absolute(init)}/checkpoints"
    params, step = checkpoints.restore_params(directory, trainer.abstract_state.params)
    cli.say(f"initialized from step {step} of {init}")
    return trainer.state_from_params(params)


def prepare(c, init: str, eval_only: bool):
    """(config, task side, trainer): `c` completed from `init`, checked, its task registered, and
    train.steps set from the epochs and the training split's size."""
    import jax

    from glm_jax import config as config_lib
    from glm_jax.downstream import finetuning
    from glm_jax.training import distributed, sharding
    from glm_jax.training import workdir as workdir_lib

    distributed.initialize(c.distributed)
    c = finetuning.config_from_init(c, init)
    finetuning.check(c)
    task = finetuning.downstream(c, workdir_lib.model_vocabulary(c))
    if c.finetune.epochs == 0 and not eval_only:
        c.train.steps = 1  # nothing is trained; the optimizer needs a schedule all the same
    elif not eval_only:
        examples = task.count_train(finetuning.shard_info()) * jax.process_count()
        epoch_steps = finetuning.steps_per_epoch(examples, c.data.batch_size)
        c.train.steps = epoch_steps * c.finetune.epochs
        c.train.eval_every = c.train.checkpoint_every = epoch_steps * c.finetune.eval_every_epochs
        cli.say(
            f"{task.task}: {examples:,} {task.unit} for training, {epoch_steps} steps per epoch of {c.data.batch_size}"
        )
    config_lib.validate(c, jax.device_count())
    trainer = task.build(sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor))
    return c, task, trainer


def run(c, init: str, workdir: str, eval_only: bool = False) -> dict:
    """Fine-tunes (or with `eval_only` scores the best checkpoint); returns the last evaluation's scores
    (with finetune.epochs=0 those of the --init parameters)."""
    import jax

    from glm_jax.downstream import finetuning
    from glm_jax.training import checkpoints
    from glm_jax.training import flops as flops_lib
    from glm_jax.training import workdir as workdir_lib
    from glm_jax.training.metrics_log import MetricsLog

    workdir = workdir_lib.absolute(workdir)
    if eval_only:
        c, init = workdir_lib.read_config(workdir), workdir
    c, task, trainer = prepare(c, init, eval_only)
    eval_data = task.eval_data()
    best = checkpoints.best_manager(workdir, task.main_metric)
    if eval_only:
        restored = checkpoints.restore_best(best, trainer.abstract_state.params)
        if restored is None:
            raise ValueError(f"{workdir}/best holds no checkpoint: fine-tune first.")
        params, step, _ = restored
        return evaluate(c, task, params, eval_data, workdir, step)
    if c.finetune.epochs == 0:
        return evaluate(c, task, start_state(c, trainer, init).params, eval_data, workdir, 0)

    checkpoints.check_or_write_config(workdir, c)
    cli.say(f"fine-tuning {trainer.num_params():,} parameters from {init} for {c.train.steps} steps")
    mngr = checkpoints.manager(workdir, c)
    restored = checkpoints.restore_latest(
        mngr, trainer.abstract_state, init_opt_state=lambda p: trainer.state_from_params(p).opt_state
    )
    if restored is None:
        state, position = start_state(c, trainer, init), 0
    else:
        state, position = restored
        cli.say(f"resumed from step {int(state.step)} (data position {position} batches)")
    stream = task.train_stream(c.data.batch_size // jax.process_count(), finetuning.shard_info(), position)
    peak = flops_lib.peak_flops_per_device(c.train.peak_flops)[0]
    log = MetricsLog(workdir, c.train.steps, peak, start_step=int(state.step))
    step_flops, tokens_per_step = task.step_flops(), c.data.batch_size * c.data.seq_len
    step, scores = int(state.step), {}
    while step < c.train.steps:
        state, metrics = trainer.train_step(state, trainer.device_batch(next(stream)))
        step += 1
        if step % c.train.log_every == 0 or step == c.train.steps:
            scalars = jax.device_get(metrics)
            scalars.pop("nonfinite")  # such a step changed nothing (see Trainer); its loss shows it
            log.train(step, scalars, tokens_per_step, step_flops)
        if step % c.train.eval_every == 0 or step == c.train.steps:
            scores = evaluate(c, task, state.params, eval_data, workdir, step)
            log.write(step, {f"eval_{k}": v for k, v in scores.items()})
            checkpoints.save(mngr, step, state, stream.position)
            checkpoints.save_if_best(best, step, state.params, scores)
            log.restart_clock()
    for m in (mngr, best):
        checkpoints.finish(m)
    kept = checkpoints.restore_best(best, trainer.abstract_state.params)
    if kept is not None:
        cli.say(f"best: step {kept[1]} | {_scores_line(kept[2])}")
        scores = kept[2]
    for m in (mngr, best):
        checkpoints.close_quietly(m)
    log.close()
    return scores


def main(argv):
    cli.no_arguments(argv)
    start = time.perf_counter()
    if not flags.FLAGS.eval_only and not flags.FLAGS.init:
        raise app.UsageError("--init DIR (a pretraining or converted workdir) is required unless --eval_only.")
    import tensorflow as tf

    try:
        run(cli.config_value(), flags.FLAGS.init, flags.FLAGS.workdir, flags.FLAGS.eval_only)
    except tf.errors.InvalidArgumentError as error:  # a data check inside the pipeline (e.g. too many answers)
        raise ValueError(f"bad data: {error.message.split(chr(10))[0]}") from error
    cli.say(f"done in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/finetune/rte.py.", lock_config=True)
    flags.DEFINE_string("init", None, "Workdir whose latest parameters start the fine-tuning.")
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, predictions, summaries and metrics.")
    flags.DEFINE_bool("eval_only", False, "Score the workdir's best checkpoint on data.eval_split.")
    flags.mark_flags_as_required(["workdir"])
    cli.run(main, "glm_jax.finetune")
