"""Offline demo: which word order of a phrase fills the blank of a docstring's summary line, among four
(glm_jax/downstream/demos/choice.py).

Usage: python -m glm_jax.finetune --config configs/finetune/demo_choice.py --init workdir/glm_tiny
--workdir workdir/choice
"""

from glm_jax.config import finetune_defaults


def get_config():
    c = finetune_defaults()
    c.finetune.task_module = "glm_jax.downstream.demos.choice"
    c.finetune.task = "glm_default_choice"
    c.finetune.epochs = 2
    c.finetune.max_choices = 4
    c.finetune.answer_len = 18  # phrases of at most 5 words: at most 16 tokens in the data, and eop
    c.data.seq_len = 128
    c.data.batch_size = 16
    c.optimizer.peak_lr = 1e-4  # a small model fine-tuned for few steps: higher than the official 1e-5
    c.train.log_every = 25
    return c
