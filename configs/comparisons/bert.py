"""BERT: a masked LM on the same spans, no block-position table (official --masked-lm).

configs/glm_tiny.py (shape, optimizer, steps, corpus) with this objective and scheme, for the
small-scale comparisons of docs/comparisons.md.
"""

import pathlib

from glm_jax.config import load_config_file


def get_config():
    c = load_config_file(pathlib.Path(__file__).parents[1] / "glm_tiny.py")
    c.data.task = "glm_default_masked_lm"
    c.model.block_positions = "none"
    return c
