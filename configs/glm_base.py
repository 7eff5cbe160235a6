"""GLM-Base (paper): 12 layers, hidden 768, 12 heads, 110M parameters with the BERT vocabulary.

Official recipe: short spans only, seq 512, peak lr 4e-4 cosine over 120k steps to 5% after a 5%
warmup, Adam (0.9, 0.98, 1e-6), weight decay 0.1, dropout 0.1, 150k steps, 16 rows per device
(data.batch_size is global: 16 x the number of devices).
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 12
    c.model.hidden = 768
    c.model.heads = 12
    c.data.seq_len = 512
    c.data.batch_size = 16
    c.optimizer.peak_lr = 4e-4
    c.optimizer.decay_steps = 120_000
    c.train.steps = 150_000
    return c
