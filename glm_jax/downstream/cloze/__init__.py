"""Cloze questions: a pattern with one blank and candidate answers scored in it (GLM's NLU, paper §2.3).

Files: `questions` (patterns, truncation as the official code, Part A layouts, SeqIO tasks of questions and
their batch shapes), `scoring` (answer log-probabilities from Part A's KV cache, the cloze losses), `kind`
(fine-tuning on a cloze task: `finetune.kind=cloze`).
"""

from glm_jax.downstream.cloze.questions import (
    MASK,
    PROMPT,
    Cloze,
    Pattern,
    Shapes,
    encode_text,
    layouts,
    part_a,
    register_cloze_task,
    segment_cuts,
    shortenable,
    verbalizer_ids,
)

__all__ = [
    "MASK",
    "PROMPT",
    "Cloze",
    "Pattern",
    "Shapes",
    "encode_text",
    "layouts",
    "part_a",
    "register_cloze_task",
    "segment_cuts",
    "shortenable",
    "verbalizer_ids",
]
