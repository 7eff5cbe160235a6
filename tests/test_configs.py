"""The shipped configs: valid, naming registered tasks, and the paper's parameter counts.

Counts are computed with `jax.eval_shape` (nothing allocated). Vocabulary assumed: BERT uncased,
30,522 + 5 command tokens = 30,527 ids, padded to 30,592 embedding rows (Base, Large, Doc, Sent,
410M, 515M); GPT-2, 50,257 + 9 command tokens = 50,266 ids, padded to 50,304 (2B, 10B).
"""

import flax.linen as nn
import jax
import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax.config import model_config
from glm_jax.data import pipeline, tasks
from glm_jax.model.glm import init_params
from glm_jax.training.synthetic import TOKENS

BERT, GPT2 = 30_527, 50_266
# config: (vocabulary ids, the paper's / release's parameter count, relative tolerance)
PAPER = {
    "glm_base": (BERT, 110e6, 0.01),
    "glm_large": (BERT, 335e6, 0.01),
    "glm_doc": (BERT, 335e6, 0.01),
    "glm_sent": (BERT, 335e6, 0.01),
    "glm_410m": (BERT, 410e6, 0.01),
    "glm_515m": (BERT, 515e6, 0.01),
    # The releases name these by rounded sizes ("2B", "10B"); our exact counts are 1.92B and 9.87B.
    "glm_2b": (GPT2, 2e9, 0.05),
    "glm_10b": (GPT2, 10e9, 0.015),
    # The baselines of §3.4 in GLM-Large's shape: without its block-position table (0.5M).
    "bert_large": (BERT, 335e6, 0.01),
    "gpt_large": (BERT, 335e6, 0.01),
}
SHIPPED = ["glm_tiny", *PAPER]
COMPARISONS = sorted((ROOT / "configs" / "comparisons").glob("*.py"))


def _load(name):
    return config_lib.load_config_file(ROOT / f"configs/{name}.py")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid(name):
    config = _load(name)
    config_lib.validate(config, 1)
    pipeline.get_task(config.data.task)  # names a registered task or mixture


@pytest.mark.parametrize("path", COMPARISONS, ids=lambda p: p.stem)
def test_comparison_configs_fit_their_tasks(path):
    """Each small-scale variant is glm_tiny with its own task, and the model scheme that task needs."""
    config, tiny = config_lib.load_config_file(path), _load("glm_tiny")
    config_lib.validate(config, 1)
    tasks.check_model(config.data.task, config.model.causal, config.model.sentinel_positions)
    assert (config.model.hidden, config.train.steps, config.data.seq_len) == (tiny.model.hidden, 800, 128)
    assert len(COMPARISONS) == 8


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameter_counts_match_the_paper(name):
    vocab, expected, tolerance = PAPER[name]
    glm = model_config(_load(name), vocab, TOKENS)
    shapes = jax.eval_shape(lambda: nn.unbox(init_params(glm, jax.random.key(0), 8)))
    count = sum(x.size for x in jax.tree.leaves(shapes))
    assert abs(count - expected) / expected < tolerance, f"{name}: {count:,}"


def test_missing_config_file_is_named():
    with pytest.raises(ValueError, match="nope.py does not exist"):
        config_lib.load_config_file(ROOT / "configs/nope.py")


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "finetune").glob("*.py")), ids=lambda p: p.stem)
def test_shipped_finetune_configs_are_valid(path):
    from glm_jax.downstream import finetuning_job

    c = config_lib.load_config_file(path)
    c.model.max_len = c.data.seq_len  # the --init model's, in a real run
    c.train.steps = 1  # set from the epochs in a real run
    finetuning_job.check(c)
    config_lib.validate(c, 8)
