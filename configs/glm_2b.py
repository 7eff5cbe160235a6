"""GLM-2B (official release): 36 layers, hidden 2048, 32 heads, positions up to 1024, GPT-2 BPE.

Pretrained with the GLM-10B style multi-task recipe (`glm_jax.data.tasks.RECIPES['10b']`); register
the tasks with `bpe.GPT2Vocabulary` through data.task_module to match the released model.
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 36
    c.model.hidden = 2048
    c.model.heads = 32
    c.model.max_len = 1024
    c.data.task = "glm_default_10b"
    c.data.seq_len = 512
    c.optimizer.peak_lr = 1e-4
    c.optimizer.decay_steps = 175_000
    c.optimizer.warmup_fraction = 0.04
    c.optimizer.end_lr_ratio = 0.1
    c.optimizer.b2 = 0.95
    c.optimizer.eps = 1e-8
    c.train.steps = 250_000
    return c
