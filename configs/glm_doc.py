"""GLM-Doc (paper): GLM-Large trained on short spans .5 + document-level generation .5.

The Large shape and optimizer recipe (configs/glm_large.py) with the multi-task data recipe 'doc'
of `glm_jax.data.tasks.PRETRAINING_RECIPES`, over the default corpus unless data.task names another mixture
(e.g. glm_c4_doc).
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "glm_large")
    c.data.task = "glm_default_doc"
    return c
