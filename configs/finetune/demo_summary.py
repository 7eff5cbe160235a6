"""Offline demo: summarize a standard-library docstring's body into its summary line
(glm_jax/downstream/demos/summary.py).

Usage: python -m glm_jax.finetune --config configs/finetune/demo_summary.py --init workdir/glm_tiny
--workdir workdir/summary
"""

from glm_jax.config import finetune_defaults
from glm_jax.downstream.demos import summary as demo_summary


def get_config():
    c = finetune_defaults()
    c.finetune.update(
        kind="seq2seq", task_module="glm_jax.downstream.demos.summary", task=demo_summary.TASK, metric="rouge",
        epochs=8, eval_every_epochs=2, answer_len=demo_summary.TARGET_LEN, num_beams=5, length_penalty=1.0,
        no_repeat_ngram_size=3, label_smoothing=0.1,
    )  # fmt: skip
    c.data.update(seq_len=demo_summary.SOURCE_LEN + demo_summary.TARGET_LEN, batch_size=16)
    c.optimizer.update(peak_lr=5e-4, warmup_fraction=0.06)  # a small model, few steps: higher than official
    c.train.log_every = 50
    return c
