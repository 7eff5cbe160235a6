"""SuperGLUE metrics as the official GLM code computes them (`tasks/superglue/evaluate.py`,
`tasks/eval_utils.py` and the metric table in `tasks/superglue/finetune.py`).

- BoolQ, COPA, RTE, WiC, WSC: accuracy.
- CB: accuracy and macro-F1 over the three classes.
- MultiRC: F1a (binary F1 of the True class over all answer options), exact match per question, accuracy.
- ReCoRD: SQuAD-normalized exact match and token F1, each the max over the gold answers.

Every score is a fraction in [0, 1]. The official code logs accuracy and the ReCoRD scores as percentages
(x100) and the F1s and MultiRC EM as fractions; only the scale differs.
"""

import re
import string
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

CB_NUM_CLASSES = 3  # entailment, contradiction, neutral


class TaskMetrics(NamedTuple):
    names: tuple[str, ...]  # the metrics reported, in the official order
    main: str  # the metric that picks the best checkpoint


# As in the official table (`DEFAULT_METRICS` in tasks/superglue/finetune.py). The official trainer keeps the
# checkpoint with the best *first* metric of its task unless --validation-metric says otherwise, so CB is
# selected by accuracy (not by SuperGLUE's average of accuracy and F1), MultiRC by F1a and ReCoRD by EM.
# MultiRC also reports plain accuracy over answer options, as the official code does.
TASK_METRICS: dict[str, TaskMetrics] = {
    "boolq": TaskMetrics(("accuracy",), "accuracy"),
    "cb": TaskMetrics(("accuracy", "f1_macro"), "accuracy"),
    "copa": TaskMetrics(("accuracy",), "accuracy"),
    "multirc": TaskMetrics(("f1a", "em", "accuracy"), "f1a"),
    "record": TaskMetrics(("em", "f1"), "em"),
    "rte": TaskMetrics(("accuracy",), "accuracy"),
    "wic": TaskMetrics(("accuracy",), "accuracy"),
    "wsc": TaskMetrics(("accuracy",), "accuracy"),
}


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Share of predictions equal to their label."""
    return float(accuracy_score(labels, predictions))


def macro_f1(predictions: Sequence[int], labels: Sequence[int], num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over every class in `range(num_classes)` (CB).

    A class that is never predicted scores F1 0. The official code passes no class list to sklearn, so a class
    absent from both labels and predictions is left out there but counts as 0 here; with every class present
    in the labels (as on CB's dev set) the two agree.
    """
    return float(f1_score(labels, predictions, average="macro", labels=list(range(num_classes)), zero_division=0.0))


def multirc_f1a(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """MultiRC F1a: binary F1 of the positive class (1 = a true answer) over all answer options."""
    return float(f1_score(labels, predictions))


def multirc_exact_match(predictions: Sequence[int], labels: Sequence[int], groups: Sequence[Hashable]) -> float:
    """MultiRC EM: share of questions (`groups` gives each answer option's question id) whose every answer
    option is predicted correctly. Options of one question need not be contiguous."""
    all_correct: dict[Hashable, bool] = {}
    for prediction, label, group in zip(predictions, labels, groups, strict=True):
        all_correct[group] = all_correct.get(group, True) and bool(prediction == label)
    if not all_correct:
        raise ValueError("no answer options to score")
    return sum(all_correct.values()) / len(all_correct)


def squad_normalize(text: str) -> str:
    """SQuAD answer normalization: lowercase, drop ASCII punctuation, drop the articles a/an/the, and
    collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(prediction: str, gold: str) -> float:
    pred_tokens = squad_normalize(prediction).split()
    gold_tokens = squad_normalize(gold).split()
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def record_exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the normalized prediction equals any normalized gold answer, else 0.0 (also with no golds)."""
    return float(any(squad_normalize(prediction) == squad_normalize(gold) for gold in golds))


def record_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best token F1 over the gold answers (0.0 with no golds): precision and recall of the multiset overlap
    of normalized whitespace tokens."""
    return max((_token_f1(prediction, gold) for gold in golds), default=0.0)


def record_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """ReCoRD "em" and "f1": means over questions of `record_exact_match` and `record_f1`; a question with no
    gold answer counts as 0, as in the official code."""
    if len(predictions) != len(golds) or not predictions:
        raise ValueError(f"need one gold list per prediction, got {len(predictions)} and {len(golds)}")
    return {
        "em": float(np.mean([record_exact_match(p, g) for p, g in zip(predictions, golds, strict=True)])),
        "f1": float(np.mean([record_f1(p, g) for p, g in zip(predictions, golds, strict=True)])),
    }


def task_scores(
    task: str,
    predictions: Sequence[int] | None,
    labels: Sequence[int] | None,
    groups: Sequence[Hashable] | None = None,
    golds: Sequence[Sequence[str]] | None = None,
    pred_texts: Sequence[str] | None = None,
) -> dict[str, float]:
    """The scores of a SuperGLUE task, keyed and ordered as `TASK_METRICS[task].names`.

    Classification tasks score `predictions` against `labels` (class ids); MultiRC also needs `groups` (question
    ids); ReCoRD scores `pred_texts` against `golds` and ignores `predictions` and `labels`.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_METRICS)}")
    if task == "record":
        if pred_texts is None or golds is None:
            raise ValueError("record needs pred_texts and golds")
        return record_scores(pred_texts, golds)
    if task == "multirc" and groups is None:
        raise ValueError("multirc needs groups (question ids)")
    compute = {
        "accuracy": lambda: accuracy(predictions, labels),
        "f1_macro": lambda: macro_f1(predictions, labels, CB_NUM_CLASSES),
        "f1a": lambda: multirc_f1a(predictions, labels),
        "em": lambda: multirc_exact_match(predictions, labels, groups),
    }
    return {name: compute[name]() for name in TASK_METRICS[task].names}
