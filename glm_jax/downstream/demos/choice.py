"""An offline multiple-choice cloze task over the default corpus, for the fine-tuning demo.

Each question is a standard-library docstring (PEP 257: a one-line summary, then a body) whose
summary line lost a phrase of 3 to 5 words: which of four word orders of that phrase fills the
blank? The three wrong answers are other orders of the same words, drawn with a seed per question,
so chance is 25% and no answer is told apart by its words alone, only by how they read in context.
Pattern: `summary-with-[MASK] body` (the body shortenable; continuous prompt spots before the summary and
before the body, as the official BoolQ pattern 0 has before its passage and question); answers are several
tokens. Train and
validation come from the default corpus's own module split, so no module appears in both. Importing
this module registers `glm_default_choice` with the default vocabulary.
"""

import itertools

import numpy as np
import seqio
import tensorflow as tf

from glm_jax.data import corpus, vocab
from glm_jax.downstream import cloze

TASK = "glm_default_choice"
CHOICES = 4
PHRASE_WORDS = (3, 5)  # words per blanked phrase, at least and at most


def _phrase(words: list[str], rng: np.random.Generator) -> tuple[int, int]:
    """(start, length) of a phrase of `PHRASE_WORDS` words inside `words`."""
    length = int(rng.integers(PHRASE_WORDS[0], min(PHRASE_WORDS[1], len(words) - 1) + 1))
    return int(rng.integers(len(words) - length + 1)), length


def questions(split: str) -> dict[str, np.ndarray]:
    """`before`, `after`, `body`, `choices` [N, 4] and `label` of every question of `split`; the
    same on every machine. Summaries whose phrase has fewer than four distinct orders are skipped."""
    pairs = [(s.split(), b) for s, b in corpus.summarized_docstrings(split) if len(s.split()) > PHRASE_WORDS[0]]
    fields = {"before": [], "after": [], "body": [], "choices": [], "label": []}
    for i, (words, body) in enumerate(pairs):
        rng = np.random.default_rng(i)
        start, length = _phrase(words, rng)
        phrase = words[start : start + length]
        orders = sorted({" ".join(p) for p in itertools.permutations(phrase)} - {" ".join(phrase)})
        if len(orders) < CHOICES - 1:
            continue
        choices = [orders[j] for j in rng.choice(len(orders), CHOICES - 1, replace=False)]
        label = int(rng.integers(CHOICES))
        choices.insert(label, " ".join(phrase))
        fields["before"].append(" ".join(words[:start]))
        fields["after"].append(" ".join(words[start + length :]))
        fields["body"].append(body)
        fields["choices"].append(choices)
        fields["label"].append(label)
    return {k: np.array(v, np.int32 if k == "label" else object) for k, v in fields.items()}


def source() -> seqio.FunctionDataSource:
    def dataset_fn(split, shuffle_files, seed=None):
        ds = tf.data.Dataset.from_tensor_slices(questions(split))
        return ds.shuffle(len(ds), seed=seed) if shuffle_files else ds

    return seqio.FunctionDataSource(dataset_fn, splits=corpus.SPLITS)


def pattern(ex) -> list:
    return [cloze.PROMPT, ex["before"], cloze.MASK, ex["after"], cloze.PROMPT, cloze.shortenable(ex["body"])]


CLOZE = cloze.Cloze(pattern, candidates=lambda ex: ex["choices"])

cloze.register_cloze_task(TASK, source(), vocab.default_vocabulary(), CLOZE)
