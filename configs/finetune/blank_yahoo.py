"""Text infilling on Yahoo Answers, the paper's Table 5: the official config_tasks/seq_blank.sh
(`glm_jax.downstream.seq2seq.BLANK_RECIPE`). The texts are the blank language model release's files.

Usage: python -m glm_jax.finetune --config configs/finetune/blank_yahoo.py --init workdir/glm_large
--workdir workdir/blank_0.3 --config.finetune.source=blank_lm:/data/yahoo --config.finetune.blank_ratio=0.3
"""

from glm_jax.downstream import seq2seq


def get_config():
    return seq2seq.recipe_config(seq2seq.BLANK)
