"""The one training loop, for pretraining and every fine-tuning kind: resume, train, evaluate, checkpoint.

`run(c, workdir, job)` trains `job` (see `job.Job`) to `train.steps`, resuming from the latest good
checkpoint of `workdir` (its train state, data position and the input stream's iterator state); a
signal while it starts ends it at once (`StoppedStarting`, exit 75).
Every `train.log_every` steps it logs, every `train.eval_every` the job evaluates, every
`train.checkpoint_every` (and at the end, at a stop, and, if the job asks, at each evaluation) it
saves (with frozen parameters: the trainable ones and the reference of their base, `frozen_base`).
SIGTERM / SIGINT stop it after the current step with a committed checkpoint (`Preempted`, exit 75,
the same step on every host); a non-finite step stops it (`Diverged`, exit 3) or is skipped
(`train.on_nonfinite`). Whatever happens, saves in flight are committed or reported and the logs
and the job closed.
"""

import jax
from absl import logging

from glm_jax import console
from glm_jax.training import checkpoints, flops, frozen_base, preemption
from glm_jax.training import stops as stops_lib
from glm_jax.training.metrics_log import MetricsLog


def run(c, workdir: str, job) -> dict:
    """Trains `job` in `workdir` to `train.steps` (a finished run trains nothing more); returns
    `job.finish`'s result. `checkpoints.check_or_write_config` has bound the workdir to `c`."""
    mngr, log = checkpoints.manager(workdir, c), None
    try:
        with preemption.StopSignals(mngr) as signals:
            signals.starting_at = checkpoints.latest_step(workdir) or 0
            state, stream = _start(job, mngr)
            peak, peak_source = flops.peak_flops_per_device(c.train.peak_flops)
            console.say(f"MFU is measured against {peak / 1e12:.2f} TFLOP/s per device ({peak_source})")
            log = MetricsLog(workdir, c.train.steps, peak, start_step=int(state.step))
            state = _train(c, job, mngr, state, stream, log, signals)
        result = job.finish(state, log)
        checkpoints.finish(mngr)  # the last save committed, or its failure raised
    finally:  # saves in flight are committed (or reported), the logs flushed, also on an early stop
        checkpoints.close_quietly(mngr)
        if log is not None:
            log.close()
        job.close()
    return result


def _start(job, mngr):
    """(state, stream) of the latest checkpoint (its input iterator restored in place), or fresh ones.

    With frozen parameters, the job's step-0 state gives them (its base, `job.base`), checked against
    the checksums the checkpoints were trained on, and the checkpoint the trainable ones."""
    trainer, stream = job.trainer, job.train_stream()
    meta, where = frozen_base.latest_meta(mngr), str(mngr.directory.parent)
    frozen_base.check_resume(meta, trainer.selection, trainer.abstract_stored.params, where)
    fresh = _base_state(job, meta, where) if trainer.selection.freezes else None
    restored = checkpoints.restore_latest(
        mngr,
        trainer.abstract_stored,
        extra=stream.restore_items,
        init_opt_state=lambda p: trainer.state_from_params(p).opt_state,
    )
    if restored is None:
        return fresh or job.fresh_state(), stream
    if not stream.resumed(restored):  # a checkpoint without the iterator's state: replay the stream
        console.say(f"the checkpoint holds no input state of this process: skipping {restored.position} batches")
        stream = job.train_stream(restored.position)
    console.say(f"resumed from step {int(restored.state.step)} (data position {restored.position} batches)")
    if fresh is None:
        return restored.state, stream
    frozen = trainer.selection.split(fresh.params)[1]
    return restored.state.replace(params=trainer.selection.join(restored.state.params, frozen)), stream


def _base_state(job, meta, where: str):
    """The job's step-0 state of a run with frozen parameters, said on the console; where checkpoints
    exist (`meta`: the newest one's), its frozen parameters must be those they were trained on."""
    console.say(job.trainer.selection.summary(job.trainer.abstract_state.params))
    base = (meta or {}).get("base")
    try:
        state = job.fresh_state()
    except (ValueError, OSError) as error:
        if base is None:
            raise
        origin = frozen_base.describe(base["origin"])
        raise ValueError(f"{where} was trained on {origin}, which cannot be read: {error}") from error
    if base is not None:
        frozen_base.verify(base, job.trainer.selection.split(state.params)[1], where)
    return state


def _train(c, job, mngr, state, stream, log, signals):
    """Steps to `train.steps`; checks each step's finiteness one step late (after dispatching the
    next), and before anything that keeps the state (checkpoints, evaluations, a stop)."""
    trainer = job.trainer
    tokens_per_step = c.data.batch_size * c.data.seq_len
    step = int(state.step)
    pending, skipped = None, 0  # (step, metrics) not yet checked; non-finite steps in a row
    while step < c.train.steps:
        batch = trainer.device_batch(next(stream))
        signals.starting_at = None  # from here on a signal stops after the step, with a checkpoint
        state, metrics = trainer.train_step(state, batch)
        step += 1
        if pending is not None:
            skipped = _check_finite(c, *pending, skipped)
        pending = (step, metrics)
        last = step == c.train.steps
        logs = step % c.train.log_every == 0 or last
        evaluates = (step % c.train.eval_every == 0 and not last) or (last and job.evaluate_at_end)
        stops = signals.should_stop(step)
        saves = stops or last or step % c.train.checkpoint_every == 0 or (evaluates and job.checkpoint_at_evaluation)
        if logs or evaluates or saves:
            skipped, pending = _check_finite(c, *pending, skipped), None
        if logs:
            scalars = jax.device_get(metrics)
            scalars.pop("nonfinite")
            log.train(step, scalars, tokens_per_step, job.step_flops(batch))
        if evaluates:
            scores = job.evaluate(step, state.params)
            log.write(step, scores)
            job.after_evaluation(step, state.params, scores)
            log.restart_clock()
        if saves:
            params, base = trainer.stored_params(state.params, job.base)
            checkpoints.save(
                mngr, step, state.replace(params=params), stream.position, items=stream.save_items(), base=base
            )
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
    console.say(f"step {step}: non-finite loss or norm ({values['loss']:.4g}); its update is skipped")
    return skipped
