"""Long rows: the default pipeline, the layout and a training step at data.seq_len 2048 and 8192.

configs/glm_large_8k.py and configs/glm_10b_2k.py train on rows of 8192 and 2048 tokens. The
batches here come from `pipeline.fixed_batches` (the tasks' real preprocessors, read in order):
the training stream adds only a shuffle buffer of 10,000 examples, which at these lengths takes
tens of seconds to fill before the first batch.
"""

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax.config import model_config
from glm_jax.data import pipeline, vocab
from glm_jax.model import layout
from glm_jax.training import sharding
from glm_jax.training.trainer import Trainer


def _tokens(task):
    return vocab.command_tokens(pipeline.get_task(task).output_features["inputs"].vocabulary)


def _layouts(batches, markers):
    """Positions and block positions of each batch, from the model's own (jitted) layout."""
    fn = jax.jit(lambda b: layout.layout(b, markers)[:2])
    return [tuple(np.asarray(x) for x in fn(b)) for b in batches]


def _check_rows(batches, seq_len, max_len, markers):
    """Rows of `seq_len` that are nearly full; positions and block positions inside tables of
    max_len + 1 rows; every Part B position the offset of one of its example's blank markers."""
    filled = []
    for batch, (positions, block_positions) in zip(batches, _layouts(batches, markers), strict=True):
        assert all(v.shape[1] == seq_len for v in batch.values())
        real = batch["segment_ids"] > 0
        filled.append(real.sum(1).max() / seq_len)
        assert 0 <= positions.min() and positions.max() <= max_len
        assert 0 <= block_positions.min() and block_positions.max() <= max_len
        part_b = real & (batch["span_ids"] > 0)
        assert part_b.any() and (batch["loss_weights"][part_b] == 1).all()
        assert (batch["inputs"][part_b.nonzero()[0], positions[part_b]][:, None] == np.asarray(markers)).any(1).all()
        part_a_positions = np.where(real & ~part_b, positions, -1)
        assert part_a_positions.max() < seq_len
    assert max(filled) > 0.9, f"no row filled over 90%: {filled}"


@pytest.mark.parametrize(
    "config_name,task",
    [
        ("glm_large_8k", "glm_default_short_spans"),
        ("glm_10b_2k", "glm_default_10b"),
        ("glm_large_8k", "glm_default_10b"),
    ],
)
def test_pipeline_and_layout_at_the_configs_lengths(config_name, task):
    """The long configs validate, size their position tables to their rows, and the default tasks'
    rows at that length (short spans; the 10B mixture with document spans of up to a whole row) stay
    inside them."""
    c = config_lib.load_config_file(ROOT / f"configs/{config_name}.py")
    config_lib.validate(c, 1)
    tokens = _tokens(task)
    glm = model_config(c, 8000, tokens, platform="cpu")
    assert glm.max_len == c.data.seq_len == c.model.max_len
    batches = pipeline.fixed_batches(task, "validation", c.data.seq_len, 2, seed=0, limit=3)
    _check_rows(batches, c.data.seq_len, glm.max_len, tokens.blank_markers)


STEPS = 5
SEQ_LEN = 2048


def test_tiny_model_trains_on_rows_of_2048():
    """A 2-layer model on the default task at seq_len 2048 (xla attention, one CPU device): the loss
    starts near ln(vocabulary) and goes down, every step finite; positions stay inside the tables."""
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 64, 4
    c.model.attention = "xla"
    c.data.seq_len, c.data.batch_size = SEQ_LEN, 2
    c.optimizer.peak_lr, c.optimizer.warmup_fraction = 3e-3, 0.0
    c.train.steps = STEPS
    config_lib.validate(c, 1)
    task = pipeline.get_task(c.data.task)
    glm = model_config(c, task.output_features["inputs"].vocabulary.vocab_size, _tokens(c.data.task))
    assert glm.attention == "xla" and glm.max_len == SEQ_LEN
    batches = pipeline.fixed_batches(c.data.task, "train", SEQ_LEN, 2, seed=0, limit=STEPS)
    _check_rows(batches, SEQ_LEN, glm.max_len, glm.blank_markers)

    trainer = Trainer(c, glm, sharding.make_mesh(devices=jax.devices()[:1]))
    state = trainer.init_state(0)
    params = nn.unbox(state.params)
    for table in ("position_embeddings", "block_position_embeddings"):
        assert params[table]["embedding"].shape[0] == SEQ_LEN + 1
    losses = []
    for batch in batches:
        state, metrics = trainer.train_step(state, trainer.device_batch(batch))
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all(), losses
    assert abs(losses[0] - np.log(glm.vocab_size)) < 1.0, losses
    assert np.mean(losses[-2:]) < losses[0] - 0.3, losses
