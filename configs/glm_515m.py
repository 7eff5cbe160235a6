"""GLM-515M (paper): 30 layers, hidden 1152, 18 heads; 515M parameters with the BERT vocabulary.

Multi-task pretrained like GLM-Doc (short spans .5 + document .5), with the Large recipe's
optimizer (peak lr 2e-4, cosine over 160k steps to 5%, 200k steps).
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 30
    c.model.hidden = 1152
    c.model.heads = 18
    c.data.task = "glm_default_doc"
    c.data.seq_len = 512
    c.optimizer.peak_lr = 2e-4
    c.optimizer.decay_steps = 160_000
    c.train.steps = 200_000
    return c
