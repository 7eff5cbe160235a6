"""Training survives signals, kill -9 and divergence: exact continuation, each step logged once,
no checkpoint of a diverged state (train subprocesses, and the loop in-process)."""

import collections
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT
from tensorboard.compat.proto import event_pb2

from glm_jax import config as config_lib
from glm_jax import pretraining
from glm_jax import workdir as workdir_lib
from glm_jax.data import pipeline
from glm_jax.training import checkpoints, stops

SMALL = [
    "--config.model.num_layers=2",
    "--config.model.hidden=32",
    "--config.model.heads=2",
    "--config.model.dropout=0.1",  # the per-step dropout keys must continue too
    "--config.data.seq_len=64",
    "--config.data.batch_size=4",
    "--config.data.eval_batches=1",
    "--config.data.unigram_batches=2",
    "--config.optimizer.decay_steps=40",  # the schedule does not depend on train.steps
    "--config.train.log_every=1",
    "--config.train.eval_every=100000",
    "--config.train.checkpoint_every=3",
]
ENDLESS = 100_000  # train.steps of runs that are stopped from outside


def _start(workdir, steps, *extra):
    command = [sys.executable, "-m", "glm_jax.train", "--config", str(ROOT / "configs/glm_tiny.py"),
               f"--workdir={workdir}", f"--config.train.steps={steps}", *SMALL, *extra]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, timeout=600):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _records(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl")) for line in lines]


def _logged_steps(workdir):
    path = workdir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for(condition, process, timeout=300):
    start = time.monotonic()
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.005)


def _losses(workdir):
    losses = collections.defaultdict(list)
    for record in _records(workdir):
        if "loss" in record:
            losses[record["step"]].append(record["loss"])
    return losses


def _tensorboard_steps(workdir, tag="loss"):
    """How often each step's `tag` scalar appears over all event files."""
    counts = collections.Counter()
    for path in workdir.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            event = event_pb2.Event.FromString(record)
            counts.update(event.step for value in event.summary.value if value.tag == tag)
    return counts


def _committed_steps(workdir):
    directory = workdir / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.exists() else []


STEPS = 24  # every interrupted run below is resumed to this step and compared with one that was not


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Losses of an uninterrupted run of STEPS steps."""
    workdir = tmp_path_factory.mktemp("reference")
    code, _, err = _finish(_start(workdir, STEPS))
    assert code == 0, err[-3000:]
    return _losses(workdir)


def _resume_to_the_end(workdir):
    assert _committed_steps(workdir)[-1:] < [STEPS], "interrupted too late: raise STEPS"
    code, out, err = _finish(_start(workdir, STEPS))
    assert code == 0, err[-3000:]
    return out


def test_sigterm_saves_the_step_and_the_rerun_continues_exactly(tmp_path, reference):
    workdir = tmp_path / "run"
    process = _start(workdir, ENDLESS)
    _wait_for(lambda: _logged_steps(workdir) >= 4, process)
    process.send_signal(signal.SIGTERM)
    code, _, err = _finish(process)
    assert code == stops.Preempted.exit_code, err[-3000:]
    stopped = _committed_steps(workdir)[-1]
    assert f"SIGTERM: stopped after step {stopped}, whose checkpoint is committed" in err
    assert "Traceback" not in err
    assert max(_losses(workdir)) == stopped  # it stopped right after the step it saved

    out = _resume_to_the_end(workdir)
    assert f"resumed from step {stopped} (data position {stopped} batches)" in out
    assert "skipping" not in out  # the input iterator was restored, not replayed
    assert _losses(workdir) == reference  # floats from JSON: equal means bitwise equal; each step once
    assert sorted(_tensorboard_steps(workdir).items()) == [(step, 1) for step in range(1, STEPS + 1)]


def test_kill_9_anywhere_then_rerun_equals_an_uninterrupted_run(tmp_path, reference):
    workdir = tmp_path / "run"
    checkpoint_dir = workdir / "checkpoints"

    def saving():  # an Orbax save in flight: its temporary directory exists
        return checkpoint_dir.exists() and any("tmp" in p.name for p in checkpoint_dir.iterdir())

    def after(steps):  # `steps` steps after the checkpoint this run resumes from
        threshold = ([0] + _committed_steps(workdir))[-1] + steps
        return lambda: _logged_steps(workdir) >= threshold

    for kill_point in (2, "during a save", 1, "during a save", 2):
        condition = saving if kill_point == "during a save" else after(kill_point)
        process = _start(workdir, ENDLESS)
        _wait_for(condition, process)
        process.kill()
        process.wait()
    _resume_to_the_end(workdir)
    assert _losses(workdir) == reference  # each step once, bitwise equal
    assert sorted(_tensorboard_steps(workdir).items()) == [(step, 1) for step in range(1, STEPS + 1)]


def test_second_signal_exits_at_once():
    script = (
        "import time\n"
        "from glm_jax.training import preemption\n"
        "with preemption.StopSignals(None) as signals:\n"
        "    print('ready', flush=True)\n"
        "    while signals.received is None: time.sleep(0.01)\n"
        "    print('first', flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline() == "first\n"  # the first one only asked to stop
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 128 + signal.SIGINT


def _config(**train):
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.update(num_layers=2, hidden=32, heads=2)
    c.data.update(seq_len=64, batch_size=8, eval_batches=1, unigram_batches=2)
    c.train.update(steps=30, log_every=1, eval_every=1000, checkpoint_every=1, keep_checkpoints=3, **train)
    c.optimizer.update(peak_lr=1e4, warmup_fraction=0.0)  # diverges within a few steps
    return c


def _finite(tree):
    return all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("action", ["stop", "skip"])
def test_divergence_stops_and_the_latest_checkpoint_is_finite(tmp_path, action):
    c = _config(on_nonfinite=action, max_skipped_steps=3)
    with pytest.raises(stops.Diverged, match=r"training diverged at step (\d+) \(loss") as raised:
        pretraining.run(c, str(tmp_path))
    step = raised.value.step
    kept = _committed_steps(tmp_path)
    assert kept == list(range(max(1, step - 3), step))  # the last 3 steps before it, all good
    records = _records(tmp_path)  # strict JSON: no bare NaN
    if action == "skip":  # the skipped steps are logged, their non-finite values as null
        assert any(r["loss"] is None for r in records if "loss" in r)
    trainer, _ = workdir_lib.trainer_for(c)
    mngr = checkpoints.manager(str(tmp_path), c)
    state, _, _ = checkpoints.restore_latest(mngr, trainer.abstract_state)
    mngr.close()
    assert _finite(state.params) and _finite(state.opt_state)
    if action == "skip":  # the skipped updates left the state of the last good step
        assert step - kept[-1] <= c.train.max_skipped_steps


def test_a_nonfinite_step_leaves_the_state_unchanged():
    c = _config()
    trainer, _ = workdir_lib.trainer_for(c)
    state = trainer.init_state(0)
    leaves, tree = jax.tree.flatten(state.params)
    state = state.replace(params=jax.tree.unflatten(tree, [leaves[0] * float("nan"), *leaves[1:]]))
    before = jax.device_get(state)
    batch = next(pipeline.TrainStream(c.data.task, c.data.seq_len, c.data.batch_size, seed=0))
    after, metrics = trainer.train_step(state, trainer.device_batch(batch))
    assert bool(metrics["nonfinite"]) and int(after.step) == int(before.step) + 1
    after = jax.device_get(after)
    jax.tree.map(np.testing.assert_array_equal, (after.params, after.opt_state), (before.params, before.opt_state))
