"""Offline demo as multiple-choice classification: the four word orders of demo_choice, a row each, scored
by the classifier head on the pooled [CLS] state (glm_jax/downstream/demos/choice_classify.py).

Usage: python -m glm_jax.finetune --config configs/finetune/demo_choice_classify.py --init workdir/glm_tiny
--workdir workdir/choice_classify
"""

from glm_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "demo_choice")
    c.finetune.kind = "classify"
    c.finetune.task_module = "glm_jax.downstream.demos.choice_classify"
    c.finetune.task = "glm_default_choice_classify"
    c.finetune.pool_token = "cls"
    return c
