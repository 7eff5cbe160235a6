"""The SuperGLUE tasks as the official code classifies them without `--cloze-eval` (`tasks/superglue/`):
`finetune.py` makes COPA and ReCoRD multiple-choice (a row per choice) and the others classification
(a row, a logit per class), and `dataset.py` gives each row's texts (`DataProcessor.encode` over each
processor's `get_classifier_input`, and the `encode` of `CopaProcessor` and `RecordProcessor`):

    boolq     passage                              | question
    cb, rte   premise                              | hypothesis
    multirc   paragraph                            | question + " answer: " + answer
    wic       word + ": " + sentence1              | sentence2
    wsc       text with the pronoun in *asterisks* | span1_text
    copa      premise + " because" (cause) / " so" | a choice
    record    passage, "@highlight\\n" as "- "      | query, then an entity (tokenized on their own)

Curly quotes and en dashes are made plain as there (`punctuation_standardization`, also in COPA's
`encode`; not WiC's word nor WSC's span1 text). The examples are the cloze tasks' (`superglue.tasks`): the
same sources and train splits (mirrored COPA, one ReCoRD question per gold answer), except that WSC trains
on all its examples, False ones too, as the official classifier does.
"""

import tensorflow as tf

from glm_jax.downstream.classify.rows import Classifier, register_classify_task
from glm_jax.downstream.prompts import NO_PROMPTS, Prompts
from glm_jax.downstream.superglue import patterns
from glm_jax.downstream.superglue import tasks as superglue_tasks
from glm_jax.downstream.superglue.text import question_id, standardize


def _pair(key_a: str, key_b: str):
    return lambda ex, _: ([standardize(ex[key_a])], [standardize(ex[key_b])])


def _multirc(ex, _):
    question = standardize(ex["question"]) + " answer: " + standardize(ex["answer"])
    return [standardize(ex["paragraph"])], [question]


def _copa(ex, choices):
    joiner = tf.where(ex["question"] == "cause", "because", "so")
    return [standardize(ex["premise"]) + " " + joiner], [choices]


def _record(ex, choices):
    passage = tf.strings.regex_replace(standardize(ex["passage"]), "@highlight\n", "- ")
    return [passage], [standardize(ex["query"]), choices]


CLASSIFIERS = {
    "boolq": Classifier(_pair("passage", "question"), labels=("false", "true")),
    "cb": Classifier(_pair("premise", "hypothesis"), labels=("entailment", "contradiction", "neutral")),
    "copa": Classifier(_copa, choices=lambda ex: standardize(tf.stack([ex["choice1"], ex["choice2"]]))),
    "multirc": Classifier(
        _multirc, labels=("0", "1"), group=lambda ex: question_id(ex["idx"]["paragraph"], ex["idx"]["question"])
    ),
    "record": Classifier(
        _record,
        choices=lambda ex: ex["entities"],
        label=patterns.first_gold,
        group=lambda ex: question_id(ex["idx"]["passage"], ex["idx"]["query"]),
        answers=lambda ex: ex["answers"],
    ),
    "rte": Classifier(_pair("premise", "hypothesis"), labels=("entailment", "not_entailment")),
    "wic": Classifier(
        lambda ex, _: ([ex["word"] + ": " + standardize(ex["sentence1"])], [standardize(ex["sentence2"])]),
        labels=("false", "true"),
    ),
    # The marked text is the official `get_classifier_input`'s: its pronoun index repaired, curly quotes plain.
    "wsc": Classifier(lambda ex, _: ([ex["marked_text"]], [ex["span1_text"]]), labels=("False", "True")),
}


def register(task: str, vocabulary, *, source="tfds", name: str | None = None, prompts: Prompts = NO_PROMPTS) -> str:
    """Registers (or replaces) SeqIO task `name` (default `superglue_{task}_classify`): SuperGLUE `task` from
    `source` ("tfds", "jsonl:DIR" or a `seqio.DataSource`, see `superglue.examples`) as classifier rows, with the
    continuous prompt tokens `prompts`. Returns the task's name."""
    raw = superglue_tasks.examples(task, source)
    name = name or f"superglue_{task}_classify"
    register_classify_task(name, superglue_tasks.split_examples(task, raw, wsc_true_only=False), vocabulary,
                           CLASSIFIERS[task], prompts=prompts)  # fmt: skip
    return name
