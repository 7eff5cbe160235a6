"""Training end to end: resume equals an uninterrupted run; bad configs fail before any work."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import pretraining

SMALL = [
    "--config.model.num_layers=2",
    "--config.model.hidden=32",
    "--config.model.heads=2",
    "--config.model.dropout=0.1",  # exercises the per-step dropout keys across a restart
    "--config.data.seq_len=64",
    "--config.data.batch_size=4",
    "--config.data.eval_batches=2",
    "--config.data.unigram_batches=5",
    "--config.optimizer.decay_steps=6",
    "--config.train.log_every=1",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=3",
]


def _train(workdir, steps, *extra):
    """Runs the train command in the workdir's parent, naming the workdir by a relative path."""
    command = [
        sys.executable,
        "-m",
        "glm_jax.train",
        "--config",
        str(ROOT / "configs/glm_tiny.py"),
        f"--workdir={workdir.name}",
        f"--config.train.steps={steps}",
        *SMALL,
        *extra,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}  # one device
    return subprocess.run(command, cwd=workdir.parent, env=env, capture_output=True, text=True, timeout=600)


def _records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _losses(workdir):
    return {r["step"]: r["loss"] for r in _records(workdir) if "loss" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    full, resumed = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("resumed")
    results = [_train(full, 6), _train(resumed, 3), _train(resumed, 6)]
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    return full, resumed, results


def test_resume_equals_uninterrupted_run_bitwise(runs):
    full, resumed, results = runs
    assert "resumed from step 3 (data position 3 batches)" in results[2].stdout
    assert sorted(_losses(full)) == [1, 2, 3, 4, 5, 6]
    assert _losses(resumed) == _losses(full)  # floats parsed from JSON: equal means bitwise equal
    assert _records(resumed)[-1]["eval_loss"] == _records(full)[-1]["eval_loss"]


def test_outputs_of_a_run(runs):
    full, _, results = runs
    last = _records(full)[-1]
    assert {"eval_loss", "eval_accuracy", "unigram_ce"} <= set(last)
    assert {"loss", "learning_rate", "steps_per_s", "tokens_per_s"} <= set(_records(full)[2])
    assert any(r.get("step") == 4 and "eval_loss" in r for r in _records(full))
    assert sorted(p.name for p in (full / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
    assert list(full.glob("events.out.tfevents.*"))
    assert "ETA" in results[0].stdout and "unigram_ce" in results[0].stdout


def test_rerun_of_a_finished_run_trains_nothing(runs):
    full, _, _ = runs
    before = _losses(full)
    result = _train(full, 6)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from step 6" in result.stdout and _losses(full) == before


def test_unknown_config_key_is_named(tmp_path):
    result = _train(tmp_path, 2, "--config.train.stepz=3")
    assert result.returncode != 0 and "stepz" in result.stderr


def test_changed_model_refuses_to_resume_and_keeps_checkpoints(runs):
    full, _, _ = runs
    saved = sorted(p.name for p in (full / "checkpoints").iterdir())
    config = _config()
    config.model.hidden = 64
    with pytest.raises(ValueError, match=r"different config \(model: .*new --workdir"):
        pretraining.run(config, str(full))
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == saved


def _config():
    return config_lib.load_config_file(ROOT / "configs/glm_tiny.py")


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("data.batch_size", 0, "data.batch_size must be > 0"),
        ("model.heads", 5, "model.hidden must be divisible by model.heads"),
        ("model.max_len", 16, "model.max_len must be 0 or >= data.seq_len"),
        ("mesh.data", 3, "does not cover the 1 devices"),
        ("optimizer.warmup_fraction", 1.5, "optimizer.warmup_fraction"),
        ("data.eval_batches", -1, "data.eval_batches, .* must be >= 0"),
        ("optimizer.decay_steps", -5, "optimizer.decay_steps must be >= 0"),
        ("optimizer.clip_norm", 0.0, "optimizer.clip_norm must be > 0"),
        ("model.attention", "flash", "model.attention must be one of"),
    ],
)
def test_invalid_configs_are_named(key, value, message):
    config = _config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config, 1)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("model.attention_dropout", 0.1, "has no dropout on attention probabilities: set model.attention_dropout=0"),
        ("data.seq_len", 192, "needs data.seq_len to be a multiple of 128"),
        ("mesh.tensor", 3, r"make model.heads \(4\) divisible by mesh.tensor \(3\)"),
    ],
)
def test_what_splash_cannot_run_is_named(key, value, message):
    config = _config()
    config.model.attention = "splash"
    config_lib.validate(config, 1)  # glm_tiny itself can run on splash
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ValueError, match=rf"model.attention='splash' .*{message}.*, or use model.attention='xla'"):
        config_lib.validate(config, 3 if key == "mesh.tensor" else 1)


def test_batch_must_split_over_devices():
    config = _config()
    config.data.batch_size = 12
    with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
        config_lib.validate(config, 8)


def test_a_workdir_that_is_a_file_is_named(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a workdir")
    with pytest.raises(ValueError, match="is a file; name a directory"):
        pretraining.run(_config(), str(path))
    assert path.read_text() == "not a workdir"
