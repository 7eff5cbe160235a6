"""GPT-Large as the paper's baseline (§3.3 Figure 4, §3.4 Table 6): GLM-Large's shape and recipe
(configs/glm_large.py) trained as a left-to-right LM: each token predicts the next, the whole row
causal, rows without [CLS], no block-position table.
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "glm_large")
    c.data.task = "glm_default_lm"  # or glm_c4_lm, glm_wikipedia_lm
    c.model.block_positions = "none"
    c.model.causal = True
    return c
