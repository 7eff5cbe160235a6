"""Seq2seq gigaword: the official fine-tuning recipe (SEQ2SEQ_RECIPES in glm_jax/downstream/seq2seq/recipes.py).

Usage: python -m glm_jax.finetune --config configs/finetune/gigaword.py --init DIR --workdir OUT
(add --config.finetune.source=jsonl:DIR to read DIR/train.jsonl and DIR/validation.jsonl).
"""

from glm_jax.downstream.seq2seq import recipe_config


def get_config():
    return recipe_config("gigaword")
