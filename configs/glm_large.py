"""GLM-Large (paper): 24 layers, hidden 1024, 16 heads, 335M parameters with the BERT vocabulary.

Official recipe: short spans (mean length 3), seq 512, peak lr 2e-4 cosine over 160k steps to 5%
after a 5% warmup, Adam (0.9, 0.98, 1e-6), weight decay 0.1, dropout 0.1, 200k steps.
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 24
    c.model.hidden = 1024
    c.model.heads = 16
    c.data.seq_len = 512
    c.data.batch_size = 16
    c.optimizer.peak_lr = 2e-4
    c.optimizer.decay_steps = 160_000
    c.train.steps = 200_000
    return c
