"""A small GLM that pretrains on the embedded default corpus on a laptop CPU in minutes.

Trained like GLM-Doc (paper §2.3): half the examples blank short spans, half one long span (50 to
100% of the row's text), so that the one default checkpoint both fills blanks (the cloze demo) and
writes text (the summary demo; with short spans alone its summaries lost to a random start).
"""

from glm_jax.config import base_config


def get_config():
    c = base_config()
    c.model.num_layers = 4
    c.model.hidden = 192
    c.model.heads = 4
    c.model.dropout = 0.0
    c.model.attention_dropout = 0.0
    c.data.task = "glm_default_doc"
    c.data.batch_size = 16
    c.data.seq_len = 128
    c.optimizer.peak_lr = 1e-3
    c.train.steps = 800
    c.train.log_every = 50
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
    return c
