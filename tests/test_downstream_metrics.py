"""SuperGLUE metrics against hand computations: accuracy, CB macro-F1, MultiRC F1a and EM, ReCoRD EM and F1,
and the per-task dispatch."""

import numpy as np
import pytest

from glm_jax.downstream.superglue import metrics


def test_accuracy():
    # 3 of 4 equal.
    assert metrics.accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert metrics.accuracy(np.array([2, 2]), np.array([2, 2])) == 1.0


def test_macro_f1_with_a_class_never_predicted():
    labels = [0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 1, 1, 1, 0, 1]
    # F1 = 2tp / (2tp + fp + fn) per class:
    #   class 0: tp 2 (#0, #1), fp 1 (#5), fn 1 (#2)        -> 4/6 = 2/3
    #   class 1: tp 2 (#3, #4), fp 2 (#2, #6), fn 0         -> 4/6 = 2/3
    #   class 2: never predicted: tp 0, fn 2                -> 0
    # macro = (2/3 + 2/3 + 0) / 3 = 4/9
    assert metrics.macro_f1(preds, labels, num_classes=3) == pytest.approx(4 / 9)
    # A class absent from both labels and predictions still counts, as 0: (1 + 1 + 0) / 3.
    assert metrics.macro_f1([0, 1], [0, 1], num_classes=3) == pytest.approx(2 / 3)


def test_multirc_f1a_and_exact_match():
    groups = ["q1", "q1", "q1", "q2", "q2", "q3", "q3", "q3"]
    labels = [1, 0, 1, 0, 1, 1, 0, 0]
    preds = [1, 0, 1, 1, 1, 0, 0, 1]
    # q1 all right; q2 wrong at #3; q3 wrong at #5 and #7 -> EM 1/3.
    assert metrics.multirc_exact_match(preds, labels, groups) == pytest.approx(1 / 3)
    # True class: tp 3 (#0, #2, #4), fp 2 (#3, #7), fn 1 (#5) -> F1 = 6 / (6 + 2 + 1) = 2/3.
    assert metrics.multirc_f1a(preds, labels) == pytest.approx(2 / 3)
    # Question ids of any hashable type, options interleaved: same scores.
    order = [7, 0, 3, 5, 1, 4, 2, 6]
    ids = {"q1": (0, 1), "q2": (0, 2), "q3": (1, 0)}
    shuffled = ([preds[i] for i in order], [labels[i] for i in order], [ids[groups[i]] for i in order])
    assert metrics.multirc_exact_match(*shuffled) == pytest.approx(1 / 3)
    assert metrics.multirc_f1a(shuffled[0], shuffled[1]) == pytest.approx(2 / 3)


def test_squad_normalize():
    # lower -> drop punctuation ("animal's" -> "animals") -> drop whole-word articles -> collapse whitespace.
    assert metrics.squad_normalize("The  Cat, an ANIMAL's toy!") == "cat animals toy"
    assert metrics.squad_normalize("Theatre A-Team") == "theatre ateam"


def test_record_exact_match_and_f1():
    # Case, punctuation and the article all go: "eiffel tower" == "eiffel tower".
    assert metrics.record_exact_match("the Eiffel Tower!", ["Paris", "Eiffel Tower"]) == 1.0
    assert metrics.record_f1("the Eiffel Tower!", ["Paris", "Eiffel Tower"]) == 1.0
    # The max over golds matters. Prediction tokens: president barack obama.
    #   "Obama":            overlap 1, p 1/3, r 1   -> F1 2(1/3)(1)/(4/3) = 1/2
    #   "Barack Obama Jr.": overlap 2, p 2/3, r 2/3 -> F1 2/3
    golds = ["Obama", "Barack Obama Jr."]
    assert metrics.record_exact_match("President Barack Obama", golds) == 0.0
    assert metrics.record_f1("President Barack Obama", golds[:1]) == pytest.approx(1 / 2)
    assert metrics.record_f1("President Barack Obama", golds) == pytest.approx(2 / 3)
    # Overlap is a multiset: "new new" vs "new york" shares one "new" -> p 1/2, r 1/2 -> F1 1/2.
    assert metrics.record_f1("new new", ["New York"]) == pytest.approx(1 / 2)
    # No overlap, or no gold at all: 0.
    assert metrics.record_f1("Berlin", ["Bonn"]) == 0.0
    assert metrics.record_exact_match("Berlin", []) == 0.0
    assert metrics.record_f1("Berlin", []) == 0.0


def test_record_scores():
    preds = ["the Eiffel Tower!", "President Barack Obama", "Berlin"]
    golds = [["Paris", "Eiffel Tower"], ["Obama", "Barack Obama Jr."], ["Bonn"]]
    # EM (1 + 0 + 0) / 3; F1 (1 + 2/3 + 0) / 3 = 5/9.
    scores = metrics.record_scores(preds, golds)
    assert scores == {"em": pytest.approx(1 / 3), "f1": pytest.approx(5 / 9)}
    with pytest.raises(ValueError):
        metrics.record_scores(preds, golds[:2])


def test_task_metrics_table():
    assert sorted(metrics.TASK_METRICS) == ["boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
    for task, spec in metrics.TASK_METRICS.items():
        assert spec.main == spec.names[0], task  # the official trainer selects by the first metric
    assert metrics.TASK_METRICS["cb"].main == "accuracy"
    assert metrics.TASK_METRICS["multirc"].main == "f1a"
    assert metrics.TASK_METRICS["record"].main == "em"


@pytest.mark.parametrize(
    "task,keys",
    [
        ("boolq", ["accuracy"]),
        ("cb", ["accuracy", "f1_macro"]),
        ("copa", ["accuracy"]),
        ("multirc", ["f1a", "em", "accuracy"]),
        ("record", ["em", "f1"]),
        ("rte", ["accuracy"]),
        ("wic", ["accuracy"]),
        ("wsc", ["accuracy"]),
    ],
)
def test_task_scores_keys(task, keys):
    preds, labels = [0, 1, 1, 0], [0, 1, 0, 0]
    scores = metrics.task_scores(
        task, preds, labels, groups=["a", "a", "b", "b"], golds=[["x y"], ["z"]], pred_texts=["x", "z"]
    )
    assert list(scores) == keys
    assert all(isinstance(value, float) for value in scores.values())


def test_task_scores_values():
    labels = [0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 1, 1, 1, 0, 1]
    # 4 of 7 right; macro-F1 as in test_macro_f1_with_a_class_never_predicted.
    expected = {"accuracy": pytest.approx(4 / 7), "f1_macro": pytest.approx(4 / 9)}
    assert metrics.task_scores("cb", preds, labels) == expected
    groups = ["q1", "q1", "q1", "q2", "q2", "q3", "q3", "q3"]
    mlabels = [1, 0, 1, 0, 1, 1, 0, 0]
    mpreds = [1, 0, 1, 1, 1, 0, 0, 1]
    # 5 of 8 options right.
    assert metrics.task_scores("multirc", mpreds, mlabels, groups=groups) == {
        "f1a": pytest.approx(2 / 3),
        "em": pytest.approx(1 / 3),
        "accuracy": pytest.approx(5 / 8),
    }
    # "x" vs "x y": p 1, r 1/2 -> F1 2/3; "z" exact.
    assert metrics.task_scores("record", None, None, golds=[["x y"], ["z"]], pred_texts=["x", "z"]) == {
        "em": pytest.approx(1 / 2),
        "f1": pytest.approx((2 / 3 + 1) / 2),
    }


def test_task_scores_errors():
    with pytest.raises(ValueError, match="unknown task"):
        metrics.task_scores("mnli", [0], [0])
    with pytest.raises(ValueError, match="groups"):
        metrics.task_scores("multirc", [0], [0])
    with pytest.raises(ValueError, match="pred_texts"):
        metrics.task_scores("record", None, None, golds=[["x"]])
