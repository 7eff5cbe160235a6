"""GLM-Sent (paper): GLM-Large trained on short spans .5 + sentence-level infilling .5.

The Large shape and optimizer recipe (configs/glm_large.py) with the data recipe 'sent' of
`glm_jax.data.tasks.PRETRAINING_RECIPES`, over the default corpus unless data.task names another mixture
(e.g. glm_c4_sent).
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "glm_large")
    c.data.task = "glm_default_sent"
    return c
