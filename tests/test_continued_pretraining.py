"""Continued pretraining (`glm_jax.train --init DIR`): grown embedding tables keep every old row and the
model's outputs on old tokens and positions; a converted checkpoint continues on a vocabulary with 2 more
ids and twice the positions, learns, and resumes its own checkpoints exactly; bad inputs are one line."""

import dataclasses
import functools
import json
import shutil

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import ROOT
from test_convert import official_state_dict, tiny_vocab
from test_model import BATCH, CONFIG
from test_train import _losses, _train

from glm_jax import config as config_lib
from glm_jax import continued, convert
from glm_jax.model.glm import GLM, init_params
from glm_jax.official import torch_format
from glm_jax.training.grow_embeddings import OFFICIAL_STD, Growth, grow_params, grow_positions, grow_rows

# --- the surgery, on tiny tables


def test_new_word_rows_follow_their_init_and_the_old_rows_stay_bitwise():
    rng = np.random.default_rng(0)
    table = rng.integers(-8, 8, (300, 16)).astype(np.float32)
    grown = np.asarray(grow_rows(table, 384, "mean", None, token_rows=256))
    np.testing.assert_array_equal(grown[:300], table)
    np.testing.assert_array_equal(grown[300:], np.broadcast_to(table[:256].mean(0), (84, 16)))  # exact: integers / 256

    small = rng.standard_normal((8, 64)).astype(np.float32)
    grown = np.asarray(grow_rows(small, 1008, "official", jax.random.key(1)))
    np.testing.assert_array_equal(grown[:8], small)
    new = grown[8:]
    assert abs(new.mean()) < 5e-4 and abs(new.std() - OFFICIAL_STD) < 5e-4  # 64,000 draws of N(0, 0.02)
    assert np.array_equal(new, grow_rows(small, 1008, "official", jax.random.key(1))[8:])
    assert not np.array_equal(new, grow_rows(small, 1008, "official", jax.random.key(2))[8:])
    assert grow_rows(small, 8, "mean", None) is small


def test_position_rows_copied_or_interpolated_exactly():
    table = np.stack([np.arange(5), 10 * np.arange(5)], axis=1).astype(np.float32)  # row k = (k, 10k), M = 4
    for how in ("copy", "interpolate"):
        np.testing.assert_array_equal(grow_positions(table, 8, how, None), table[[0, 1, 2, 3, 4, 1, 2, 3, 4]])
    np.testing.assert_array_equal(grow_positions(table, 7, "copy", None), table[[0, 1, 2, 3, 4, 2, 3, 4]])
    np.testing.assert_array_equal(grow_positions(table, 13, "copy", None)[5:], table[[4, 1, 2, 3, 4, 1, 2, 3, 4]])
    x = np.array([4 / 3, 8 / 3, 4.0])  # rows 5, 6, 7 read the old table at j * 4 / 3
    interpolated = np.asarray(grow_positions(table, 7, "interpolate", None))
    np.testing.assert_array_equal(interpolated[:5], table)
    np.testing.assert_allclose(interpolated[5:], np.stack([x, 10 * x], axis=1), rtol=1e-6)
    fresh = np.asarray(grow_positions(table, 7, "official", jax.random.key(0)))
    np.testing.assert_array_equal(fresh[:5], table)
    assert np.abs(fresh[5:]).max() < 5 * OFFICIAL_STD


def test_shrinking_and_unknown_inits_are_errors():
    table = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"word embeddings \(rows\) would shrink from 5 to 4: embedding tables only"):
        grow_rows(table, 4, "official", None)
    with pytest.raises(ValueError, match=r"position table \(largest position\) would shrink from 4 to 3"):
        grow_positions(table, 3, "copy", None)
    with pytest.raises(ValueError, match="word embeddings .* start as one of .*not 'zeros'"):
        grow_rows(table, 6, "zeros", None)
    with pytest.raises(ValueError, match="position table .* start as one of .*not 'stretch'"):
        grow_positions(table, 6, "stretch", None)


@pytest.mark.parametrize("sentinel,rows,positions", [(False, "official", "copy"), (True, "mean", "interpolate")])
def test_logits_on_old_tokens_and_positions_do_not_change(sentinel, rows, positions):
    """A sentinel-token model puts Part B at position max_len: copy and interpolate move its row there."""
    old = dataclasses.replace(CONFIG, sentinel_positions=sentinel)
    new = dataclasses.replace(old, vocab_size=256, max_len=40)
    shapes = nn.unbox(jax.eval_shape(functools.partial(init_params, old, seq_len=12), jax.random.key(0)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
    grown = grow_params(params, Growth(256, 40, 128, rows, positions), jax.random.key(1))
    assert grown["word_embeddings"]["embedding"].shape == (256, 32)
    assert grown["position_embeddings"]["embedding"].shape == grown["block_position_embeddings"]["embedding"].shape
    assert grown["layers_0"] is params["layers_0"]
    before = jax.jit(GLM(old).apply)({"params": params}, BATCH)
    after = jax.jit(GLM(new).apply)({"params": grown}, BATCH)
    np.testing.assert_allclose(after[..., :128], before, rtol=0, atol=1e-6)


# --- through the command line, from a converted official checkpoint

STEPS = 20
# A task over the default corpus whose vocabulary is the shipped one and 2 more ids (8,002).
TASK_MODULE = """from glm_jax.data import sources, tasks, vocab

vocabulary = vocab.GLMSentencePieceVocabulary(vocab.DEFAULT_SPM_PATH, extra_ids=2)
tasks.register_pretraining_task("extra_ids_short_spans", sources.default_corpus_source(), vocabulary)
"""
GROWN = [
    "--config.model.max_len=128",
    "--config.data.seq_len=128",
    "--config.data.task_module=extra_ids_task",  # the workdir's parent is the command's directory
    "--config.data.task=extra_ids_short_spans",
    "--config.optimizer.decay_steps=0",
    "--config.train.eval_every=10",
    "--config.train.checkpoint_every=5",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A random official checkpoint converted to a workdir: 2 layers, width 32, 2 heads, 8,000 word rows
    (the default vocabulary's ids), positions up to 64."""
    root = tmp_path_factory.mktemp("official")
    torch_format.save(official_state_dict(np.random.default_rng(0), 2, 32, 64, vocab=8000), root / "model.bin")
    convert.convert(str(root / "model.bin"), str(root / "dir"), heads=2, base_config=str(ROOT / "configs/glm_tiny.py"))
    return root / "dir"


@pytest.fixture(scope="module")
def continued_run(converted, tmp_path_factory):
    """The continued run to step 20; then the same command again after its last checkpoint was lost."""
    root = tmp_path_factory.mktemp("continued")
    (root / "extra_ids_task.py").write_text(TASK_MODULE)
    new = root / "new"
    first = _train(new, STEPS, f"--init={converted}", *GROWN)
    assert first.returncode == 0, first.stderr[-3000:]
    losses = _losses(new)
    shutil.rmtree(new / "checkpoints" / str(STEPS))  # as if stopped after step 15
    again = _train(new, STEPS, f"--init={converted}", *GROWN)
    assert again.returncode == 0, again.stderr[-3000:]
    return new, first, losses, again


def test_a_converted_checkpoint_continues_with_more_tokens_and_positions(converted, continued_run):
    new, first, losses, _ = continued_run
    line = (
        f"initialized from {converted} step 0: 2 tokens added (rows 8000 -> 8064, official init), positions 64 -> 128"
    )
    assert f"{line} (copied)" in first.stdout
    saved = json.loads((new / "config.json").read_text())
    assert (saved["model"]["vocab_size"], saved["model"]["max_len"], saved["model"]["hidden"]) == (8064, 128, 32)
    assert saved["train"]["init"] == str(converted)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert losses[STEPS] < losses[1] - 0.5, losses  # 9.41 -> 8.18


def test_the_rerun_resumes_its_own_checkpoints_exactly(converted, continued_run):
    new, _, losses, again = continued_run
    assert f"{new} holds checkpoints of a run started from {converted}: resuming them; --init is not read again" in (
        again.stdout
    )
    assert "resumed from step 15" in again.stdout and "initialized from" not in again.stdout
    assert _losses(new) == losses  # floats parsed from JSON: equal means bitwise equal

    # Without --init the run resumes the same model, from its own config.json.
    c = continued.config_for(_config(), None, str(new))
    assert (c.model.vocab_size, c.model.max_len, c.train.init) == (8064, 128, str(converted))


def test_another_init_on_the_workdir_is_one_line_and_keeps_its_checkpoints(converted, continued_run, tmp_path):
    new = continued_run[0]
    kept = sorted(p.name for p in (new / "checkpoints").iterdir())
    result = _train(new, STEPS, f"--init={tmp_path}", *GROWN)
    assert result.returncode == 2
    expected = f"glm_jax.train: error: {new} holds checkpoints of a run started from --init {converted}, not from "
    assert result.stderr.strip().splitlines() == [
        f"{expected}--init {tmp_path}: use a new --workdir, or the run's own --init to resume it."
    ]
    assert sorted(p.name for p in (new / "checkpoints").iterdir()) == kept


def _config(**changes):
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.update(num_layers=2, hidden=32, heads=2)
    c.data.seq_len = 64
    for key, value in changes.items():
        section, name = key.split(".")
        c[section][name] = value
    return c


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"model.hidden": 64}, r"is a model of model.hidden=32; the config asks for model.hidden=64: use a config"),
        (
            {"model.max_len": 48, "data.seq_len": 48},
            r"model.max_len=48 is below the 64 positions of --init .*only grow",
        ),
        ({"data.seq_len": 128}, r"data.seq_len=128 is longer than .* \(max_len 64\): .*--config.model.max_len=128"),
        ({"model.vocab_size": 4096}, r"model.vocab_size=4096 is fewer rows than the 8000 of --init"),
    ],
)
def test_a_config_that_does_not_fit_the_init_is_named(converted, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        continued.config_for(_config(**changes), str(converted), str(tmp_path / "new"))


def test_an_init_that_is_no_workdir_or_of_another_vocabulary_is_named(converted, tmp_path):
    with pytest.raises(ValueError, match="has no config.json: it is not a glm_jax workdir"):
        continued.config_for(_config(), str(tmp_path), str(tmp_path / "new"))
    shutil.copy(converted / "config.json", tmp_path / "config.json")
    with pytest.raises(ValueError, match=f"--init {tmp_path} holds no checkpoint"):
        continued.config_for(_config(), str(tmp_path), str(tmp_path / "new"))
    other = _config(**{"data.vocabulary": tiny_vocab(tmp_path)})
    with pytest.raises(ValueError, match=r"vocabulary \(\d+ ids\) numbers its command tokens unlike that of --init"):
        continued.config_for(other, str(converted), str(tmp_path / "new"))
