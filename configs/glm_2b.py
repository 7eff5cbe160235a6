"""GLM-2B (official release): 36 layers, hidden 2048, 32 heads, positions up to 1024, GPT-2 BPE.

The GLM-10B recipe (configs/glm_10b.py: task mask tokens, short spans .5 / sentences .3 /
document .2, its optimizer) at the 2B shape of the official scripts.
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "glm_10b")
    c.model.num_layers = 36
    c.model.hidden = 2048
    c.model.heads = 32
    return c
