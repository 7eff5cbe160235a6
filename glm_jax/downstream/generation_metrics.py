"""Metrics for generation tasks, computed by the reference libraries (no re-implementation here).

- Summarization: ROUGE-1, ROUGE-2 and ROUGE-Lsum F-measures from Google's `rouge_score` (Porter stemming),
  averaged over examples, x100.
- Question generation (SQuAD): corpus BLEU-4 from `sacrebleu` with its default "13a" tokenizer.
"""

import re
from collections.abc import Sequence

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")

# The score that picks the best checkpoint, per metric family.
MAIN = {"rouge": "rougeLsum", "bleu": "bleu4"}

# A break after sentence-final punctuation followed by whitespace, or at any newline.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")


def sentences_on_lines(text: str) -> str:
    """`text` with one sentence per line, as ROUGE-Lsum expects (it splits summaries on newlines).

    Sentences end after `.`, `!` or `?` followed by whitespace, and at existing newlines; pieces are stripped
    and empty ones dropped. A plain regex, so no NLTK data is needed.
    """
    pieces = (piece.strip() for piece in _SENTENCE_BREAK.split(text))
    return "\n".join(piece for piece in pieces if piece)


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if not predictions:
        raise ValueError("no predictions to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/Lsum F-measure (x100) over examples, with stemming; both sides one sentence per line."""
    _check(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    per_example = [
        scorer.score(sentences_on_lines(reference), sentences_on_lines(prediction))
        for prediction, reference in zip(predictions, references, strict=True)
    ]
    return {name: 100.0 * float(np.mean([s[name].fmeasure for s in per_example])) for name in ROUGE_TYPES}


def bleu4(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 (0-100) of `predictions` against one reference each, sacrebleu defaults (tokenizer "13a")."""
    _check(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def scores(metric: str, predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """The scores of one metric family: "rouge" -> rouge1/rouge2/rougeLsum, "bleu" -> bleu4."""
    if metric == "rouge":
        return rouge(predictions, references)
    if metric == "bleu":
        return {"bleu4": bleu4(predictions, references)}
    raise ValueError(f"unknown generation metric {metric!r}; options: {sorted(MAIN)}")
