"""Offline demo: text infilling (paper Table 5) on docstrings of the default corpus, a share
`finetune.blank_ratio` of each text's words blanked (glm_jax/downstream/demos/infill.py).

Usage: python -m glm_jax.finetune --config configs/finetune/demo_infill.py --init workdir/glm_tiny
--workdir workdir/infill_0.1 --config.finetune.blank_ratio=0.1
"""

from glm_jax.config import finetune_defaults
from glm_jax.downstream.demos import infill


def get_config():
    c = finetune_defaults()
    c.finetune.update(
        kind="seq2seq", seq2seq="blank", source="demo", blank_ratio=0.1, metric="bleu", epochs=4,
        eval_every_epochs=2, answer_len=infill.TARGET_LEN, num_beams=1, no_repeat_ngram_size=3, label_smoothing=0.1,
    )  # fmt: skip
    c.data.update(seq_len=infill.SOURCE_LEN + infill.TARGET_LEN, batch_size=16)
    c.optimizer.update(peak_lr=5e-4, warmup_fraction=0.06)  # a small model, few steps: higher than official
    c.train.log_every = 50
    return c
