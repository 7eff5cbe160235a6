"""Generation metrics against the reference libraries called directly, and hand-checkable cases: ROUGE
(with the sentence-per-line split that ROUGE-Lsum needs), corpus BLEU-4 and the metric dispatch."""

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from glm_jax.downstream import generation_metrics as gm

ROUGE_TYPES = ["rouge1", "rouge2", "rougeLsum"]


def _reference_rouge(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Mean F-measure x100 from `RougeScorer.score(target, prediction)` on texts already split into lines."""
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=True)
    per_example = [scorer.score(reference, prediction) for prediction, reference in pairs]
    return {name: 100.0 * float(np.mean([s[name].fmeasure for s in per_example])) for name in ROUGE_TYPES}


def test_sentences_on_lines():
    assert gm.sentences_on_lines("One. Two! Three? Four") == "One.\nTwo!\nThree?\nFour"
    # Existing newlines are breaks too; pieces are stripped and empty ones dropped.
    assert gm.sentences_on_lines("  first line\n\nsecond.   third.\n") == "first line\nsecond.\nthird."
    # No break without whitespace after the punctuation.
    assert gm.sentences_on_lines("Pi is 3.14 here.Next") == "Pi is 3.14 here.Next"
    assert gm.sentences_on_lines("") == ""
    assert gm.sentences_on_lines(" \n ") == ""


def test_rouge_matches_scorer_with_explicit_newlines():
    predictions = [
        "the dog ate the bone. the cat sat on the mat.",
        "Police arrested two men! They were released later?",
        "a completely unrelated summary",
    ]
    references = [
        "the cat sat on the mat. the dog ate the bone.",
        "Two men were arrested by police.\nBoth were released on bail.",
        "the markets fell sharply on monday. investors were worried.",
    ]
    split_predictions = [
        "the dog ate the bone.\nthe cat sat on the mat.",
        "Police arrested two men!\nThey were released later?",
        "a completely unrelated summary",
    ]
    split_references = [
        "the cat sat on the mat.\nthe dog ate the bone.",
        "Two men were arrested by police.\nBoth were released on bail.",
        "the markets fell sharply on monday.\ninvestors were worried.",
    ]
    got = gm.rouge(predictions, references)
    assert set(got) == set(ROUGE_TYPES)
    expected = _reference_rouge(list(zip(split_predictions, split_references, strict=True)))
    for name in ROUGE_TYPES:
        assert got[name] == pytest.approx(expected[name], abs=1e-9)
    # The split matters: without it, ROUGE-Lsum on the swapped sentences of the first pair is not 100.
    unsplit = _reference_rouge([(predictions[0], references[0])])
    assert unsplit["rougeLsum"] < 99.0
    assert gm.rouge(predictions[:1], references[:1])["rougeLsum"] == pytest.approx(100.0)


def test_rouge_hand_cases():
    same = gm.rouge(["The cat sat. It purred."], ["The cat sat. It purred."])
    assert same == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeLsum": 100.0})
    disjoint = gm.rouge(["alpha beta gamma"], ["delta epsilon zeta"])
    assert disjoint == pytest.approx({"rouge1": 0.0, "rouge2": 0.0, "rougeLsum": 0.0})
    # Porter stemming: running -> run, dogs -> dog.
    assert gm.rouge(["running dogs"], ["run dog"])["rouge1"] == pytest.approx(100.0)
    # Mean over examples: one perfect, one disjoint.
    mixed = gm.rouge(["a b c", "x y z"], ["a b c", "p q r"])
    assert mixed["rouge1"] == pytest.approx(50.0)


def test_bleu4_matches_sacrebleu():
    predictions = [
        "what is the capital of france ?",
        "who wrote the novel war and peace?",
        "when did the second world war end",
    ]
    references = [
        "what is the capital city of france ?",
        "who is the author of war and peace?",
        "in which year did world war ii end ?",
    ]
    expected = sacrebleu.corpus_bleu(predictions, [references]).score
    got = gm.bleu4(predictions, references)
    assert got == pytest.approx(expected, abs=1e-9)
    assert 0.0 < got < 100.0
    assert gm.bleu4(references, references) == pytest.approx(100.0)


def test_scores_dispatch_and_main():
    predictions, references = ["the cat sat on the mat"], ["the cat sat on a mat"]
    assert gm.scores("rouge", predictions, references) == gm.rouge(predictions, references)
    assert gm.scores("bleu", predictions, references) == {"bleu4": gm.bleu4(predictions, references)}
    assert gm.MAIN == {"rouge": "rougeLsum", "bleu": "bleu4"}
    for metric, main in gm.MAIN.items():
        assert main in gm.scores(metric, predictions, references)
    with pytest.raises(ValueError, match="rouge"):
        gm.scores("meteor", predictions, references)


@pytest.mark.parametrize("fn", [gm.rouge, gm.bleu4])
def test_bad_inputs(fn):
    with pytest.raises(ValueError):
        fn([], [])
    with pytest.raises(ValueError):
        fn(["one", "two"], ["one"])
