"""Sequence-classifier fine-tuning, the official `GLMForSequenceClassification` (fine-tuning without
`--cloze-eval`): a row's final hidden state at its pool token through a small head, a logit per class,
or per row of a multiple-choice question (`finetune.kind=classify`).

Files: `rows` (the official classifier rows `[CLS] text_a [SEP] text_b [eos]`, SeqIO tasks of them and their
batch shapes), `superglue` (the eight SuperGLUE tasks' texts), `model` (pooling, the head, the objective),
`trainer` (the head's parameters beside the transformer's), `kind` (`ClassifyKind`).
"""

from glm_jax.downstream.classify.model import POOL_TOKENS
from glm_jax.downstream.classify.rows import Classifier, register_classify_task

__all__ = ["POOL_TOKENS", "Classifier", "register_classify_task"]
