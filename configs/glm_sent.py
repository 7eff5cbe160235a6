"""GLM-Sent (paper): GLM-Large trained on short spans .5 + sentence-level infilling .5.

Data recipe 'sent' of `glm_jax.data.tasks.RECIPES` over the default corpus unless data.task names
another mixture (e.g. glm_c4_sent).
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 24
    c.model.hidden = 1024
    c.model.heads = 16
    c.data.task = "glm_default_sent"
    c.data.seq_len = 512
    c.optimizer.peak_lr = 2e-4
    c.optimizer.decay_steps = 160_000
    c.train.steps = 200_000
    return c
