"""SuperGLUE RTE: the official fine-tuning recipe and pattern
(SUPERGLUE_RECIPES in glm_jax/downstream/superglue/recipes.py).

Usage: python -m glm_jax.finetune --config configs/finetune/rte.py --init DIR --workdir OUT
(add --config.finetune.source=jsonl:DIR to read the original train.jsonl / val.jsonl).
"""

from glm_jax.downstream.superglue import recipe_config


def get_config():
    return recipe_config("rte")
