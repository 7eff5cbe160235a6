"""GLM-10B (official recipe): 48 layers, hidden 4096, 64 heads, positions up to 1024.

Data recipe '10b' of `glm_jax.data.tasks.PRETRAINING_RECIPES`: task-specific mask tokens, short spans .5,
sentences .3, document .2 with gpt_min_ratio .25. The official model uses the GPT-2 BPE vocabulary
(`glm_jax.data.bpe.GPT2Vocabulary`, register the tasks with it through `data.task_module`);
the default corpus mixture uses the shipped SentencePiece model. Peak lr 1e-4 cosine over 175k
steps to 10% after a 4% warmup, Adam (0.9, 0.95, 1e-8), weight decay 0.1, 250k steps, 21 rows
per device: data.batch_size is global, so set it to 21 x the number of devices on a pod.
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 48
    c.model.hidden = 4096
    c.model.heads = 64
    c.model.max_len = 1024
    c.data.task = "glm_default_10b"
    c.data.seq_len = 512
    c.data.batch_size = 21
    c.optimizer.peak_lr = 1e-4
    c.optimizer.decay_steps = 175_000
    c.optimizer.warmup_fraction = 0.04
    c.optimizer.end_lr_ratio = 0.1
    c.optimizer.b2 = 0.95
    c.optimizer.eps = 1e-8
    c.train.steps = 250_000
    return c
