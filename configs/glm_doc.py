"""GLM-Doc (paper): GLM-Large trained on short spans .5 + document-level generation .5.

The paper's GLM-Doc 410M/515M models are 30 layers of hidden 1024/16 heads or 1152/18 heads;
this config is the Large shape with the multi-task data recipe of `glm_jax.data.tasks.RECIPES`
('doc'), over the default corpus unless data.task names another mixture (e.g. glm_c4_doc).
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 24
    c.model.hidden = 1024
    c.model.heads = 16
    c.data.task = "glm_default_doc"
    c.data.seq_len = 512
    c.optimizer.peak_lr = 2e-4
    c.optimizer.decay_steps = 160_000
    c.train.steps = 200_000
    return c
