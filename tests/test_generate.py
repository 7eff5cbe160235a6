"""The generate command: prompts with blank markers in, filled texts out, from a workdir's checkpoint."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import generate, workdir
from glm_jax.data import vocab
from glm_jax.downstream.decoding import DecodeOptions, Decoder, Prompts
from glm_jax.model.glm import init_params

VOCAB = vocab.default_vocabulary()
T = VOCAB.command_tokens


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A workdir holding a random 2-layer model over the default vocabulary."""
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads, c.data.seq_len = 2, 32, 2, 64
    trainer, _ = workdir.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(5), 64)))
    path = tmp_path_factory.mktemp("gen") / "w"
    workdir.write(str(path), c, params)
    return path, trainer.glm_config, params


def test_encode_prompt_puts_marker_ids_between_text():
    ids = generate.encode_prompt("The [MASK] module and [sMASK] then [gMASK]", VOCAB, T)
    assert ids == [*VOCAB.encode("The"), T.mask, *VOCAB.encode("module and"), T.smask, *VOCAB.encode("then"), T.gmask]


def test_filled_text_holds_the_prompt_and_the_fills(tiny):
    _, config, params = tiny
    decoder = Decoder(config, T, DecodeOptions(max_new_tokens=4, min_new_tokens=4))
    texts = ["first [MASK] and [MASK] last", "continue this"]
    out = generate.filled_texts(decoder, params, VOCAB, texts)
    fills, _ = decoder.fill(params, Prompts([generate.encode_prompt(t, VOCAB, T) for t in texts], T))
    a, b, c = (VOCAB.decode(ids) for ids in (fills[0, 0].tolist(), fills[0, 1].tolist(), fills[1, 0].tolist()))
    assert out[0] == VOCAB.decode(
        [*VOCAB.encode("first"), *fills[0, 0], *VOCAB.encode("and"), *fills[0, 1], *VOCAB.encode("last")]
    )
    assert a in out[0] and b in out[0] and out[1].startswith("continue this") and out[1].endswith(c)


def _generate(*args):
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "glm_jax.generate", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_cli_fills_a_file_of_prompts_in_batches(tiny, tmp_path):
    path, _, _ = tiny
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one [MASK] two\n\nthree [MASK] four [MASK]\nfive\n")
    result = _generate("--workdir", path, "--prompts", prompts, "--batch_size", 2, "--max_new_tokens", 3,
                       "--strategy", "beam", "--num_beams", 2)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()  # one line per prompt line: the blank one answered by a blank one
    assert len(lines) == 4 and lines[0].startswith("one") and lines[1] == "" and lines[3].startswith("five")
    assert "[MASK]" not in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--text", "a", "--prompts", "p.txt"], "exactly one of --text or --prompts"),
        (["--prompts", "/nonexistent.txt"], "no such file"),
        (["--text", "a", "--max_new_tokens", "500"], "max_len"),
    ],
)
def test_cli_bad_arguments_fail_before_loading(tiny, args, message):
    result = _generate("--workdir", tiny[0], *args)
    assert result.returncode != 0 and message in result.stderr
