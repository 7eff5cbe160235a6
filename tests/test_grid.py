"""Seed and learning-rate grids: the summary by hand, bad arguments, and a 2 × 2 grid on the cloze demo."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import workdir
from glm_jax.downstream import finetuning_job, grid
from glm_jax.model.glm import init_params

DEMO = "configs/finetune/demo_choice.py"
# The cloze demo made small: its 255 validation questions for training too, 4 steps of 64, Part A of 46 tokens,
# no dropout (its random bits take long to compile on CPU), no timing of the CPU's peak.
SMALL = {"finetune.epochs": 1, "finetune.train_split": "validation", "data.batch_size": 64, "data.seq_len": 64,
         "model.dropout": 0.0, "model.attention_dropout": 0.0, "train.peak_flops": 1e12}  # fmt: skip


def record(task, metric, lr, seed, **scores):
    return {"task": task, "metric": metric, "lr": lr, "seed": seed, "workdir": f"w/{lr}_{seed}", "step": 4,
            "scores": scores}  # fmt: skip


# Task "a": lr 1e-5 scores 0.25, 0.625, 1.0 (mean 0.625, std 0.375); lr 2e-5 0.625, 0.75, 0.875 (mean 0.75,
# std 0.125): the best lr is 2e-5, the best run lr 1e-5 seed 3. Task "b": one seed, a non-finite score.
RECORDS = [
    record("a", "accuracy", 2e-5, 3, accuracy=0.875, f1=0.5),
    record("a", "accuracy", 1e-5, 1, accuracy=0.25, f1=0.0),
    record("b", "rougeLsum", 1e-5, 1, rougeLsum=None),
    record("a", "accuracy", 1e-5, 3, accuracy=1.0, f1=1.0),
    record("a", "accuracy", 2e-5, 1, accuracy=0.625, f1=0.5),
    record("b", "rougeLsum", 3e-5, 1, rougeLsum=0.5),
    record("a", "accuracy", 1e-5, 2, accuracy=0.625, f1=0.5),
    record("a", "accuracy", 2e-5, 2, accuracy=0.75, f1=0.5),
]


def test_summary_by_hand():
    a, b = grid.summarize(RECORDS)
    assert a["lrs"] == [
        {"lr": 1e-5, "seeds": [1, 2, 3], "mean": {"accuracy": 0.625, "f1": 0.5}, "std": {"accuracy": 0.375, "f1": 0.5}},
        {"lr": 2e-5, "seeds": [1, 2, 3], "mean": {"accuracy": 0.75, "f1": 0.5}, "std": {"accuracy": 0.125, "f1": 0.0}},
    ]
    assert a["best_lr"] == 2e-5 and a["best_run"] == RECORDS[3]
    assert b["lrs"] == [
        {"lr": 1e-5, "seeds": [1], "mean": {"rougeLsum": None}, "std": {"rougeLsum": None}},
        {"lr": 3e-5, "seeds": [1], "mean": {"rougeLsum": 0.5}, "std": {"rougeLsum": None}},
    ]
    assert b["best_lr"] == 3e-5 and b["best_run"] == RECORDS[5]
    assert grid.markdown(a).splitlines()[2:] == [
        "| lr | seeds | accuracy | f1 |",
        "|---|---|---:|---:|",
        "| 1e-5 | 1,2,3 | 0.6250 ± 0.3750 | 0.5000 ± 0.5000 |",
        "| 2e-5 (best) | 1,2,3 | 0.7500 ± 0.1250 | 0.5000 ± 0.0000 |",
        "",
        "best run: lr 1e-5, seed 3, step 4 (w/1e-05_3): accuracy 1.0000 | f1 1.0000",
    ]
    assert "| 1e-5 | 1 | n/a ± n/a |" in grid.markdown(b)
    assert [grid.run_name(lr, 7) for lr in (1e-4, 2.5e-5, 6e-6)] == ["lr1e-4_seed7", "lr2.5e-5_seed7", "lr6e-6_seed7"]


def test_the_best_evaluation_of_a_workdir(tmp_path):
    lines = [{"step": 2, "loss": 1.0}, {"step": 2, "eval_accuracy": 0.5, "eval_truncated": 0.0},
             {"step": 4, "eval_accuracy": None}, {"step": 6, "eval_accuracy": 0.5, "eval_truncated": 0.25}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert grid.best_evaluation(str(tmp_path), "accuracy") == (6, {"accuracy": 0.5, "truncated": 0.25})
    with pytest.raises(ValueError, match="records no evaluation of f1"):
        grid.best_evaluation(str(tmp_path), "f1")


@pytest.mark.parametrize(
    "parse,values,message",
    [
        (grid.parse_seeds, [], "--seeds is empty"),
        (grid.parse_seeds, ["1", "x"], "'x' is not an integer >= 0"),
        (grid.parse_seeds, ["1.5"], "'1.5' is not an integer"),
        (grid.parse_seeds, ["-1"], "'-1' is not an integer >= 0"),
        (grid.parse_seeds, ["3", "3"], "'3' is given twice"),
        (grid.parse_lrs, [], "--lrs is empty"),
        (grid.parse_lrs, ["1e-5", ""], "'' is not a learning rate > 0"),
        (grid.parse_lrs, ["0"], "'0' is not a learning rate > 0"),
        (grid.parse_lrs, ["nan"], "'nan' is not a learning rate > 0"),
        (grid.parse_lrs, ["1e-5", "0.00001"], "'0.00001' is given twice"),
    ],
)
def test_bad_values(parse, values, message):
    with pytest.raises(ValueError, match=message):
        parse(values)


def test_bad_grids_fail_before_any_run(tmp_path):
    assert grid.parse_seeds(["1", " 2"]) == [1, 2] and grid.parse_lrs(["5e-6", "1e-5"]) == [5e-6, 1e-5]
    with pytest.raises(ValueError, match="--config.train.seed is set by the grid"):
        grid.check_overrides(["data.seq_len", "train.seed"])
    c = config_lib.load_config_file(ROOT / DEMO)
    with pytest.raises(ValueError, match="has no config.json"):
        grid.run(c, str(tmp_path / "missing"), str(tmp_path / "g"), [1], [1e-5])
    c.finetune.epochs = 0
    with pytest.raises(ValueError, match="finetune.epochs must be > 0"):
        grid.run(c, str(tmp_path / "missing"), str(tmp_path / "g"), [1], [1e-5])
    assert not (tmp_path / "g").exists()


def test_the_command_rejects_bad_arguments_in_one_line(tmp_path):
    """The errors above take this way too (`cli.call`); a missing flag is the quickest to show it."""
    flags = [f"--config={DEMO}", f"--workdir={tmp_path}/g", "--seeds=1", "--lrs=1"]  # and no --init
    command = [sys.executable, "-m", "glm_jax.grid", *flags]
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stdout + result.stderr
    assert lines[0].startswith("glm_jax.grid: error: ") and "--init must have a value" in lines[0], lines[0]
    assert not (tmp_path / "g").exists()


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    """A random 1-layer model of width 32 with the default vocabulary, as a workdir."""
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 1, 32, 2
    c.data.seq_len = 64
    trainer, _ = workdir.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(0), 64)))
    path = str(tmp_path_factory.mktemp("init") / "w")
    workdir.write(path, c, params)
    return path


def test_a_two_by_two_grid_on_the_cloze_demo_in_both_ways_then_a_rerun(init_dir, tmp_path, monkeypatch, capsys):
    """lr 1e-4 runs in this process; the grid then runs lr 1e-3 as 2 processes at a time, skipping the recorded
    runs of lr 1e-4; a rerun of the whole grid trains nothing."""
    root, seeds, lrs = tmp_path / "grid", [1, 2], [1e-4, 1e-3]
    c = config_lib.load_config_file(ROOT / DEMO)
    for key, value in SMALL.items():
        section, name = key.split(".")
        c[section][name] = value
    assert grid.run(c, init_dir, str(root), seeds, lrs[:1]) == 0
    assert "0 recorded in" in capsys.readouterr().out
    monkeypatch.setenv("XLA_FLAGS", "")  # one CPU device in the processes: quicker to compile for
    args = [f"--config={ROOT / DEMO}", f"--init={init_dir}", *(f"--config.{k}={v}" for k, v in SMALL.items())]
    assert grid.run(c, init_dir, str(root), seeds, lrs, processes=2, finetune_args=args) == 0
    out = capsys.readouterr().out
    assert "2 recorded in" in out and "[lr1e-3_seed2] exit status 0" in out and "[lr1e-4" not in out, out[-3000:]
    with capsys.disabled():
        print("\n" + out[out.index("###") :])

    records = grid.read_records(str(root))
    assert sorted((r["lr"], r["seed"]) for r in records) == [(1e-4, 1), (1e-4, 2), (1e-3, 1), (1e-3, 2)]
    for r in records:
        name = grid.run_name(r["lr"], r["seed"])
        assert r["task"] == "glm_default_choice" and r["metric"] == "accuracy" and r["step"] == 4
        assert set(r["scores"]) == {"accuracy", "truncated"} and r["workdir"] == f"{root}/{name}"
        saved = json.loads((root / name / "config.json").read_text())
        assert (saved["optimizer"]["peak_lr"], saved["train"]["seed"]) == (r["lr"], r["seed"])
        assert saved["data"]["seq_len"] == 64 and saved["finetune"]["train_split"] == "validation"
    summary = [json.loads(line) for line in (root / grid.SUMMARY_FILE).read_text().splitlines()]
    assert summary == grid.summarize(records) and grid.markdown(summary[0]) in out

    def no_training(*args):
        raise AssertionError("a recorded run was fine-tuned again")

    monkeypatch.setattr(finetuning_job, "run", no_training)
    assert grid.run(c, init_dir, str(root), seeds, lrs) == 0
    assert "4 recorded in" in capsys.readouterr().out and grid.read_records(str(root)) == records
