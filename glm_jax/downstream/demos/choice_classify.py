"""The choice demo (`choice.py`) as multiple-choice classification (`finetune.kind=classify`), the official
way without `--cloze-eval` (as its COPA and ReCoRD): one row per word order, the summary line with that
order in its blank, then the body,

    [CLS] Return the value of the named attribute [SEP] body ... [eos]

a logit per row from the classifier head, cross-entropy over the four. Importing this module registers
`glm_default_choice_classify` (and the cloze task) with the default vocabulary.
"""

import tensorflow as tf

from glm_jax.data import vocab
from glm_jax.downstream import classify
from glm_jax.downstream.demos import choice

TASK = "glm_default_choice_classify"


def texts(ex, choices):
    """(the summary with each choice in its blank, the body)."""
    filled = tf.strings.strip(ex["before"] + " " + choices + " " + ex["after"])
    return [tf.strings.regex_replace(filled, " +", " ")], [ex["body"]]


CLASSIFIER = classify.Classifier(texts, choices=lambda ex: ex["choices"])

classify.register_classify_task(TASK, choice.source(), vocab.default_vocabulary(), CLASSIFIER)
