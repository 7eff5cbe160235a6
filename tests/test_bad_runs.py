"""Runs that used to hang, lose work or mislead, through the command line: each ends within seconds
(the 5 MB document at the pipeline's rate) with its message and exit status, and nothing already
written is lost (empty corpora, a tiny validation split, a 5 MB one-line document, a signal while
starting, a file where a folder belongs, two runs on one workdir, more steps on a finished
schedule, a read-only workdir)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax.training import checkpoints

TINY = [
    "--config.model.num_layers=1",
    "--config.model.hidden=32",
    "--config.model.heads=2",
    "--config.data.seq_len=64",
    "--config.data.batch_size=4",
    "--config.data.eval_batches=1",
    "--config.data.unigram_batches=1",
    "--config.train.log_every=1",
    "--config.train.eval_every=100000",
]
TASKS = """
from glm_jax.data import sources, tasks, vocab
for name in ("empty", "big"):
    files = {{"train": "{root}/" + name + "/train/*.txt", "validation": "{root}/" + name + "/val/*.txt"}}
    tasks.register_pretraining_task("bad_runs_" + name, sources.text_files(files), vocab.default_vocabulary())
"""


def _corpus(root, name, train: list[str], validation: list[str]) -> None:
    for split, texts in (("train", train), ("val", validation)):
        (root / name / split).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / name / split / f"{i}.txt").write_text(text)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A task module registering `bad_runs_empty` (empty files) and `bad_runs_big` (one ~5 MB document
    on one line for training, "Hi there." for validation)."""
    root = tmp_path_factory.mktemp("corpora")
    _corpus(root, "empty", ["", ""], [""])
    words = "the quick brown fox jumps over the lazy dog while seven wizards quietly hex a jovial knight "
    _corpus(root, "big", [words * (5_000_000 // len(words))], ["Hi there."])
    (root / "bad_runs_tasks.py").write_text(TASKS.format(root=root))
    return root


def _train(workdir, *extra, corpora=None, steps=2, small=True):
    command = [sys.executable, "-m", "glm_jax.train", "--config", str(ROOT / "configs/glm_tiny.py"),
               f"--workdir={workdir}", f"--config.train.steps={steps}", *(TINY if small else []), *extra]  # fmt: skip
    path = f"{ROOT}{os.pathsep}{corpora}" if corpora else str(ROOT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XLA_FLAGS": "", "PYTHONPATH": path}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(*args, timeout=300, **kwargs):
    start = time.monotonic()
    process = _train(*args, **kwargs)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err, time.monotonic() - start


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "glm_jax.train: error:" in line]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def test_a_corpus_of_empty_files_is_an_error_before_training(corpora, tmp_path):
    extra = ["--config.data.task_module=bad_runs_tasks", "--config.data.task=bad_runs_empty"]
    status, _, err, seconds = _run(tmp_path / "w", *extra, corpora=corpora)
    print(f"empty corpus: status {status} in {seconds:.1f} s")
    assert status == 2, err[-3000:]
    message = "Split 'train' of task 'bad_runs_empty' yields no tokens: its 2 document(s) are all empty"
    assert message in _error_line(err)
    assert not (tmp_path / "w" / "checkpoints").exists() and seconds < 120


def test_a_5mb_one_line_document_trains_and_a_one_document_validation_split_evaluates(corpora, tmp_path):
    extra = ["--config.data.task_module=bad_runs_tasks", "--config.data.task=bad_runs_big"]
    status, out, err, seconds = _run(tmp_path / "w", *extra, corpora=corpora)
    print(f"5 MB document, 2 steps and the final evaluation: {seconds:.1f} s")
    assert status == 0, err[-3000:]
    final = [line for line in out.splitlines() if line.startswith("final step 2 | eval_loss")]
    assert len(final) == 1, out[-3000:]
    assert (tmp_path / "w" / "checkpoints" / "2").is_dir()
    assert not list((tmp_path / "w" / "checkpoints").glob("*.orbax-checkpoint-tmp*"))


def test_a_signal_while_starting_ends_the_run_at_once(corpora, tmp_path):
    extra = ["--config.data.task_module=bad_runs_tasks", "--config.data.task=bad_runs_big"]
    process = _train(tmp_path / "w", *extra, corpora=corpora)
    for line in process.stdout:  # the loop has started: it now waits for the first batch (a 5 MB shuffle)
        if line.startswith("MFU is measured"):
            break
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    seconds = time.monotonic() - sent
    print(f"SIGTERM while starting: status {process.returncode} {seconds:.1f} s after the signal")
    assert process.returncode == 75, err[-3000:]
    assert "glm_jax.train: SIGTERM while starting: stopped before training step 1" in err
    assert seconds < 20 and not (tmp_path / "w" / "checkpoints" / "1").exists()


def test_a_file_named_checkpoints_is_an_error_and_stays(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "checkpoints").write_text("notes")
    status, _, err, seconds = _run(tmp_path / "w")
    assert status == 2 and seconds < 120, err[-3000:]
    assert f"{tmp_path}/w/checkpoints is a file, not a directory: move it away" in _error_line(err)
    assert (tmp_path / "w" / "checkpoints").read_text() == "notes"


def test_a_second_run_on_a_held_workdir_is_refused(tmp_path):
    workdir = tmp_path / "w"
    first = _train(workdir, "--config.train.checkpoint_every=1", steps=100_000)
    metrics = workdir / "metrics.jsonl"
    start = time.monotonic()
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() - start < 300
        time.sleep(0.05)
    holder = json.loads((workdir / "lock").read_text())
    assert holder["pid"] == first.pid and holder["command"] == "glm_jax.train"
    first.send_signal(signal.SIGSTOP)  # the log stands still while the second run tries
    try:
        logged = metrics.read_text()
        status, _, err, seconds = _run(workdir, "--config.train.checkpoint_every=1", steps=100_000)
        assert metrics.read_text() == logged  # the second run wrote nothing
    finally:
        first.send_signal(signal.SIGCONT)
    print(f"second run: status {status} in {seconds:.1f} s")
    assert status == 2, err[-3000:]
    assert f"{workdir} is in use by glm_jax.train (pid {first.pid} on " in _error_line(err)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert first.returncode == 75 and not (workdir / "lock").exists()  # released at the end


def test_more_steps_on_a_run_must_choose_its_schedule(tmp_path):
    workdir = tmp_path / "w"
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.train.steps = 30
    checkpoints.check_or_write_config(str(workdir), c)  # as the finished 30-step run left it
    (workdir / "checkpoints" / "30").mkdir(parents=True)
    saved = (workdir / "config.json").read_text()
    status, _, err, _ = _run(workdir, steps=40, small=False)
    line = _error_line(err)
    assert status == 2 and "is at step 30 of a learning-rate schedule over 30 steps; train.steps=40" in line, line
    assert "--config.optimizer.decay_steps=30 keeps the old schedule" in line
    assert "--config.optimizer.decay_steps=40 re-plans it over 40 steps" in line
    assert (workdir / "config.json").read_text() == saved
    for decay_steps in (30, 40):  # either choice resumes
        c.train.steps, c.optimizer.decay_steps = 40, decay_steps
        checkpoints.check_or_write_config(str(workdir), c)


def test_an_unwritable_workdir_is_one_line():
    status, _, err, seconds = _run("/sys/glm_jax_workdir")  # not creatable, as any user
    assert status == 2 and seconds < 120, err[-3000:]
    assert "--workdir /sys/glm_jax_workdir is not writable" in _error_line(err)
