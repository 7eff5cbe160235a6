"""The command lines: `--help` at once and quiet, bad input as one error line (exit 2), no banners."""

import dataclasses
import logging
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from glm_jax import cli, convert, evaluate, generate

COMMANDS = ("train", "finetune", "grid", "generate", "evaluate", "convert", "compile", "reproduce")
BANNERS = ("absl::InitializeLog", "oneDNN", "cuda", "cuInit", "cpu_feature_guard", "uncached FunctionDataset")
HEAVY = ("jax", "tensorflow", "seqio")


def _env() -> dict:
    """The suite's environment without its TF_CPP_MIN_LOG_LEVEL: the commands must quiet TensorFlow."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}


def _command(name: str, *args) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    command = [sys.executable, "-m", f"glm_jax.{name}", *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    return result, time.perf_counter() - start


@pytest.mark.parametrize("name", COMMANDS)
def test_help_is_quick_and_quiet(name):
    result, seconds = _command(name, "--help")
    print(f"glm_jax.{name} --help: {seconds:.2f}s")  # benchmarks/cli_startup.py measures it properly
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--workdir" in result.stdout or "--config" in result.stdout
    assert not any(banner in result.stdout + result.stderr for banner in BANNERS), result.stderr
    assert seconds < 10  # loose: the machine may be busy; it is well under 1 s on an idle one


@pytest.mark.parametrize("name", COMMANDS)
def test_help_loads_no_heavy_module(name):
    """What makes --help quick, without timing it: JAX, TensorFlow and SeqIO are never imported."""
    code = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules]))\n"
        f"sys.argv = ['glm_jax.{name}', '--help']\n"
        f"runpy.run_module('glm_jax.{name}', run_name='__main__', alter_sys=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stdout


# One bad input of each command, and bad flags: (command, arguments, part of the message); {tmp} is
# a fresh directory.
BAD_INPUTS = [
    ("train", ["--config=configs/glm_tiny.py", "--workdir={tmp}/t", "--config.data.eval_batches=-1"],
     "data.eval_batches"),
    ("train", ["--config=configs/glm_tiny.py", "--workdir={tmp}/t", "--config.train.stepz=3"], "stepz"),
    ("train", ["--config=configs/nonexistent.py", "--workdir={tmp}/t"], "--config=configs/nonexistent.py"),
    ("train", ["--workdir={tmp}/t"], "--config must have a value"),
    ("finetune", ["--config=configs/finetune/demo_choice.py", "--init={tmp}/missing", "--workdir={tmp}/f"],
     "has no config.json"),
    ("finetune", ["--init={tmp}", "--workdir={tmp}/f"], "--config FILE (e.g. configs/finetune/rte.py) is required"),
    ("generate", ["--workdir={tmp}", "--prompts={tmp}/missing.txt"], "no such file"),
    ("evaluate", ["--workdir={tmp}/missing"], "has no config.json"),
    ("convert", ["--checkpoint=tests/data/mp_rank_00_model_states.pt", "--heads=2", "--vocabulary=bogus:x",
                 "--workdir={tmp}/c"], "'bogus:x' is not understood"),
    ("convert", ["--workdir={tmp}/c", "--bogus"], "unrecognized arguments: --bogus"),
    ("compile", ["--config=configs/glm_tiny.py", "--config.mesh.data=3"], "does not cover"),
    ("reproduce", ["--workdir={tmp}/r", "--variants=glm,bogus"], "'bogus' is not a variant; the variants are glm,"),
    ("reproduce", ["--workdir={tmp}/r", "--seeds=0,0"], "--seeds: '0' is given twice."),
]  # fmt: skip


@pytest.mark.parametrize("name,args,message", BAD_INPUTS)
def test_bad_input_is_one_error_line(tmp_path, name, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result, seconds = _command(name, *args)
    print(f"glm_jax.{name} {' '.join(args)}: {seconds:.1f}s")
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert result.returncode == 2, output[-3000:]
    assert not (tmp_path / "f").exists() and not (tmp_path / "t").exists()  # no workdir left behind
    assert len(lines) == 1, output[-3000:]  # no banner, no traceback, no usage
    assert lines[0].startswith(f"glm_jax.{name}: error: ") and message in lines[0], lines[0]


def test_restated_flag_choices_match_the_library():
    from glm_jax.downstream import zero_shot
    from glm_jax.downstream.decoding import STRATEGIES, DecodeOptions

    assert generate.DECODE_DEFAULTS == dataclasses.asdict(DecodeOptions())
    assert set(STRATEGIES) == {"greedy", "sample", "beam"}  # generate's --strategy choices
    assert evaluate.SETTINGS == zero_shot.SETTINGS and evaluate.BLANKS == zero_shot.BLANKS


def test_one_line():
    assert cli.one_line(ValueError("bad\n  value\n")) == "bad value"
    assert cli.one_line(KeyError("'k'\nDid you mean 'key'?")) == "'k' Did you mean 'key'?"
    quoted = ValueError("Error whilst parsing config file:\n\nTraceback (most recent call last):\n  x\nNameError: y")
    assert cli.one_line(quoted) == "Error whilst parsing config file: NameError: y"
    assert cli.one_line(ValueError()) == "ValueError"


def test_call_turns_expected_errors_into_status_2(capsys):
    def bad():
        raise ValueError("no good")

    assert cli.call("glm_jax.x", bad) == 2
    assert capsys.readouterr().err == "glm_jax.x: error: no good\n"

    def bug():
        raise RuntimeError("a bug")

    assert cli.call("glm_jax.x", lambda: None) == 0
    with pytest.raises(RuntimeError):  # unexpected: its traceback stays
        cli.call("glm_jax.x", bug)


def test_convert_main_in_process(tmp_path, capsys):
    assert convert.main(["--workdir", str(tmp_path / "w"), "--model", "glm-large"]) == 2
    assert capsys.readouterr().err.startswith("glm_jax.convert: error: Give --checkpoint FILE")


def test_only_seqios_uncached_warning_is_dropped():
    def record(message):
        return logging.LogRecord("absl", logging.WARNING, "x.py", 1, message, None, None)

    absl_logger = logging.getLogger("absl")
    cli.quiet()
    try:
        uncached = record("Using an uncached FunctionDataset for training is not recommended since ...")
        assert not absl_logger.filter(uncached)
        assert absl_logger.filter(record("Something else is not recommended"))
    finally:
        absl_logger.removeFilter(cli._not_seqio_uncached)
