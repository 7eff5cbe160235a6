"""Fine-tuning survives what pretraining survives, through the command line (it runs on the same loop):
SIGTERM (exit 75, a committed checkpoint of that step), kill -9 during an evaluation, right after a
best/ save and during a save, a non-finite step (exit 3), damaged checkpoints in checkpoints/ and
best/; the SuperGLUE input stream resumes from its saved iterator, not by replaying."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import workdir as workdir_lib
from glm_jax.downstream import finetuning_job
from glm_jax.model.glm import init_params
from glm_jax.training import checkpoints, stops

TRAIN, VALIDATION = 48, 12  # RTE examples: 12 steps of 4 per epoch
EPOCHS = 3


def _rte_rows(rng, n):
    words = "the cat sat on a mat and dog ran to house it was not very big small".split()
    sentence = lambda k: " ".join(rng.choice(words, k)).capitalize() + "."  # noqa: E731
    return [
        {"premise": sentence(12), "hypothesis": sentence(5), "idx": i, "label": ["entailment", "not_entailment"][i % 2]}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(init workdir, RTE jsonl directory) of a tiny model and a tiny RTE in the original files' format."""
    root = tmp_path_factory.mktemp("setup")
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.update(num_layers=1, hidden=32, heads=2)
    c.data.seq_len = 64
    trainer, _ = workdir_lib.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(0), 64)))
    workdir_lib.write(str(root / "init"), c, params)
    data = root / "rte"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", TRAIN), ("val", VALIDATION)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rte_rows(rng, n)))
    return root / "init", data


def _args(setup, workdir, *extra):
    init, data = setup
    return [
        "--config", str(ROOT / "configs/finetune/rte.py"), f"--init={init}", f"--workdir={workdir}",
        f"--config.finetune.source=jsonl:{data}", f"--config.finetune.epochs={EPOCHS}", "--config.data.seq_len=64",
        "--config.data.batch_size=4", "--config.train.log_every=1", "--config.train.checkpoint_every=5",
        "--config.optimizer.peak_lr=1e-3", "--config.finetune.answer_len=4", *extra,
    ]  # fmt: skip


def _start(setup, workdir, *extra):
    command = [sys.executable, "-m", "glm_jax.finetune", *_args(setup, workdir, *extra)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, timeout=900):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _lines(workdir, name="metrics.jsonl"):
    path = workdir / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, process, timeout=600):
    start = time.monotonic()
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.005)


def _steps(directory):
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.exists() else []


TIMING = ("steps_per_s", "tokens_per_s", "tflops_per_device", "mfu")


def _outcome(workdir):
    """Each logged step's record (timings aside), the predictions, and the best steps kept: what a resumed
    run must equal."""
    records = {}
    for record in _lines(workdir):
        record = {k: v for k, v in record.items() if k not in TIMING}
        assert (record["step"], tuple(record)) not in records, f"step {record['step']} logged twice"
        records[record["step"], tuple(record)] = record
    return records, _lines(workdir, "predictions_validation.jsonl"), _steps(workdir / "best")


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference") / "run"
    code, out, err = _finish(_start(setup, workdir))
    assert code == 0, err[-3000:]
    assert "best: step" in out
    return _outcome(workdir)


def test_sigterm_stops_with_a_checkpoint_and_the_rerun_is_exact(setup, reference, tmp_path):
    workdir = tmp_path / "run"
    process = _start(setup, workdir)
    _wait_for(lambda: len(_lines(workdir)) >= 7, process)  # past the first checkpoint, inside epoch 1
    process.send_signal(signal.SIGTERM)
    code, _, err = _finish(process)
    assert code == stops.Preempted.exit_code, err[-3000:]
    stopped = _steps(workdir / "checkpoints")[-1]
    assert f"SIGTERM: stopped after step {stopped}, whose checkpoint is committed" in err and "Traceback" not in err
    assert max(r["step"] for r in _lines(workdir)) == stopped
    code, out, err = _finish(_start(setup, workdir))
    assert code == 0, err[-3000:]
    assert f"resumed from step {stopped} (data position {stopped} batches)" in out and "skipping" not in out
    assert _outcome(workdir) == reference  # losses, evaluations, predictions and best/: bitwise the same


def test_kill_9_during_an_evaluation_after_a_best_save_and_during_a_save(setup, reference, tmp_path):
    workdir = tmp_path / "run"
    best, saves = workdir / "best", workdir / "checkpoints"

    def evaluating():  # the first epoch's last step is logged: its evaluation runs now
        return any(r["step"] == TRAIN // 4 and "loss" in r for r in _lines(workdir))

    def best_saved():  # the second evaluation's parameters are committed in best/
        return 2 * TRAIN // 4 in _steps(best)

    def saving():  # an Orbax save in flight: its temporary directory exists
        return saves.exists() and any("tmp" in p.name for p in saves.iterdir()) and _steps(saves)[-1:] >= [25]

    for condition in (evaluating, best_saved, saving):
        process = _start(setup, workdir)
        _wait_for(condition, process)
        process.kill()
        process.wait()
    code, _, err = _finish(_start(setup, workdir))
    assert code == 0, err[-3000:]
    assert _outcome(workdir) == reference


def test_a_nonfinite_step_stops_with_status_3(setup, tmp_path):
    code, _, err = _finish(_start(setup, tmp_path / "run", "--config.optimizer.peak_lr=1e6"))
    assert code == stops.Diverged.exit_code and "training diverged at step" in err, err[-3000:]
    assert "Traceback" not in err


def _config(setup, **finetune):
    init, data = setup
    c = config_lib.load_config_file(ROOT / "configs/finetune/rte.py")
    c.finetune.update(**{"source": f"jsonl:{data}", "epochs": 1, "answer_len": 4, **finetune})
    c.data.update(seq_len=64, batch_size=8)  # the suite's 8 CPU devices
    c.train.update(log_every=100, checkpoint_every=4)
    return c


def test_damaged_checkpoints_and_best_fall_back(setup, tmp_path, capsys):
    init, _ = setup
    workdir = tmp_path / "run"
    c = _config(setup, epochs=2)
    finetuning_job.run(c, str(init), str(workdir))  # 12 steps: checkpoints 8 and 12 kept, best of 6 and 12
    kept, best = _steps(workdir / "checkpoints"), _steps(workdir / "best")
    assert kept == [8, 12] and best == [6, 12]
    scores = {s: json.loads((workdir / "best" / str(s) / "scores" / "metadata").read_text()) for s in best}
    first = max(best, key=lambda s: (scores[s]["accuracy"], s))
    # Truncate the array files of the best evaluation: --eval_only falls back to the other one, saying so.
    for shard in (workdir / "best" / str(first) / "params").rglob("*"):
        if shard.is_file() and shard.parent.name == "d":
            shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    capsys.readouterr()
    again = finetuning_job.run(None, "", str(workdir), eval_only=True)
    out = capsys.readouterr().out
    assert f"Checkpoint step {first} in {workdir / 'best'} is damaged" in out
    other = [s for s in best if s != first][0]
    assert f"step {other} |" in out and again["accuracy"] == scores[other]["accuracy"]
    assert (workdir / "best_corrupt" / str(first)).exists()
    # Garbage metadata in the newest train checkpoint: a resume falls back to step 8 and ends as before.
    (workdir / "checkpoints" / "12" / "data" / "metadata").write_text("not json")
    before = _lines(workdir)
    finetuning_job.run(c, str(init), str(workdir))
    out = capsys.readouterr().out
    assert "Checkpoint step 12" in out and "resumed from step 8" in out
    assert [r for r in _lines(workdir) if "loss" in r] == [r for r in before if "loss" in r]


def test_the_superglue_stream_resumes_from_its_iterator_state(setup, tmp_path):
    """A stream of the training split at a deep position (many epochs in) is restored in place from the
    checkpoint's iterator state, without drawing the batches before it again."""
    init, _ = setup
    c = finetuning_job.config_from_init(_config(setup), str(init))
    c.train.steps = 1
    c, kind = finetuning_job.prepare(c, str(init), eval_only=False)
    stream = kind.train_stream(8, None, 0)
    deep = 250  # about 41 epochs of 6 batches
    for _ in range(deep):
        next(stream)
    mngr = checkpoints.manager(str(tmp_path), c)
    checkpoints.save(mngr, 1, kind.trainer.init_state(0), stream.position, items=stream.save_items())
    checkpoints.finish(mngr)
    expected = [next(stream) for _ in range(3)]
    fresh = kind.train_stream(8, None, 0)
    restored = checkpoints.restore_latest(mngr, kind.trainer.abstract_state, extra=fresh.restore_items)
    mngr.close()
    assert fresh.resumed(restored) and fresh.position == deep
    for want in expected:
        got = next(fresh)
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    shutil.rmtree(tmp_path / "checkpoints")
