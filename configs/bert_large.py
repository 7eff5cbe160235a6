"""BERT-Large as the paper's baseline (§3.4, Table 6): GLM-Large's shape and recipe (configs/glm_large.py)
trained as a masked LM, the official --masked-lm: the same short spans, masked in place, loss at the
masked tokens, every token seeing the whole row, no block-position table.
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "glm_large")
    c.data.task = "glm_default_masked_lm"  # or glm_c4_masked_lm, glm_wikipedia_masked_lm
    c.model.block_positions = "none"
    return c
