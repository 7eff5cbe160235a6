"""The official patterns and verbalizers of `tasks/superglue/pvp.py`, one function per task: (TF example,
pattern id) -> the pieces of Part A (see `glm_jax.downstream.cloze.questions`), and pattern id -> the
verbalizer words by label. Hold this file against the official `pvp.py`: the strings, their piece
boundaries and the shortenable pieces are the same; RTE and CB patterns 0-3 have two segments, as the
official `parts_a` and `parts_b`.
"""

import tensorflow as tf

from glm_jax.downstream.cloze import MASK, shortenable
from glm_jax.downstream.superglue.text import (
    is_in,
    lowercase_first,
    remove_final_punc,
    rstrip,
    standardize,
)


def boolq(ex, p):
    passage, question = standardize(ex["passage"]), standardize(ex["question"])
    if p < 2:
        return [shortenable(passage), " Question:", shortenable(" " + question), "? Answer:", MASK, "."]
    if p < 4:
        return [shortenable(passage), " Based on the previous passage,", shortenable(" " + question), "?", MASK, "."]
    return ["Based on the following passage", shortenable(" " + question), "?", MASK, ".", shortenable(" " + passage)]


def rte(ex, p):
    """Patterns 0-3 have two segments (hypothesis; blank and premise), truncated in turn as the official."""
    premise = standardize(ex["premise"])
    hypothesis = remove_final_punc(standardize(ex["hypothesis"]))
    return {
        0: (['"', shortenable(hypothesis), '" ?'], [MASK, ",", ' "', shortenable(premise), '"']),
        1: ([shortenable(hypothesis), "?"], [MASK, ",", shortenable(" " + premise)]),
        2: (['"', shortenable(hypothesis), '" ?'], [MASK, '. "', shortenable(premise), '"']),
        3: ([shortenable(hypothesis), "?"], [MASK, ".", shortenable(" " + premise)]),
        4: [shortenable(premise), " question:", shortenable(" " + hypothesis), " True or False?", " answer:", MASK],
    }[p]


def cb(ex, p):
    if p < 4:
        return rte(ex, p)
    premise, hypothesis = standardize(ex["premise"]), standardize(ex["hypothesis"])
    return [
        shortenable(premise),
        " question:",
        shortenable(" " + hypothesis),
        " true, false or neither?",
        " answer:",
        MASK,
    ]


def copa_choices(ex):
    return [remove_final_punc(lowercase_first(ex[key])) for key in ("choice1", "choice2")]


def copa(ex, p):
    premise = shortenable(remove_final_punc(" " + ex["premise"]))
    joiner = tf.where(ex["question"] == "cause", " because", ", so")
    c1, c2 = copa_choices(ex)
    if p == 0:
        return ['"', c1, '" or "', c2, '"?', premise, joiner, MASK, "."]
    return [c1, " or", " " + c2, "?", premise, joiner, MASK, "."]


def multirc(ex, p):
    passage = shortenable(remove_final_punc(rstrip(standardize(ex["paragraph"]))))
    question = remove_final_punc(rstrip(standardize(ex["question"])))
    answer = standardize(ex["answer"])
    return {
        0: [passage, ".", " Question:", " " + question + "?", " Is it", " " + answer, "?", MASK, "."],
        1: [passage, ".", " Question:", " " + question, "?", ' Is the correct answer "', answer, '"?', MASK, "."],
        2: [
            passage,
            ". Based on the previous passage,",
            " " + question,
            "?",
            ' Is "',
            answer,
            '" a correct answer?',
            MASK,
            ".",
        ],
        3: [passage, " " + question, "- [", MASK, "]", answer],
        4: [passage, ".", " Question:", " " + question, "?", " " + answer, "?", MASK, "."],
    }[p]


def wic(ex, p):
    s1, s2, word = standardize(ex["sentence1"]), standardize(ex["sentence2"]), ex["word"]
    if p == 0:
        return [shortenable('"' + s1 + '" / "' + s2 + '"'), ' Similar sense of "' + word + '"?', MASK, "."]
    if p == 1:
        return [
            shortenable(s1),
            shortenable(" " + s2),
            " Does " + word + " have the same meaning in both sentences?",
            MASK,
        ]
    return [word, " .", ' Sense (1) (a) "', shortenable(s1), '"', " (", MASK, ') "', s2, '"']


def wsc(ex, p):
    pronoun = "'*" + ex["span2_text"] + "*'"
    return {
        0: [shortenable(ex["marked_text"]), " The pronoun " + pronoun + " refers to", MASK, "."],
        1: [
            shortenable(ex["marked_text"]),
            " In the previous sentence, the pronoun " + pronoun + " refers to",
            MASK,
            ".",
        ],
        2: [
            shortenable(ex["marked_text"]),
            " Question: In the passage above, what does the pronoun " + pronoun + " refer to?",
            " Answer:",
            MASK,
            ".",
        ],
    }[p]


def record(ex, p):
    del p  # the only pattern
    passage = tf.strings.regex_replace(standardize(ex["passage"]), "@highlight\n", "- ")  # as the GPT-3 paper
    parts = tf.concat([tf.strings.split(standardize(ex["query"]), "@placeholder", maxsplit=1), [""]], 0)
    left, right = parts[0], parts[1]
    return [shortenable(passage), " " + rstrip(left), MASK, right]


def first_gold(ex):
    """Index of the first entity that is a gold answer, -1 if none is."""
    hits = tf.where(is_in(ex["entities"], ex["answers"]))[:, 0]
    return tf.cast(tf.concat([hits, [-1]], 0)[0], tf.int32)


_YES_NO = (" No", " Yes")  # labels 0 False, 1 True


def boolq_words(p):
    return _YES_NO if p % 2 == 0 else (" false", " true")


def rte_words(p):  # labels entailment, not_entailment
    return (" true", " false") if p == 4 else (" Yes", " No")


def cb_words(p):  # labels entailment, contradiction, neutral
    return (" true", " false", " neither") if p == 4 else (" Yes", " No", " Maybe")


def multirc_words(p):
    return (" False", " True") if p == 3 else _YES_NO


def wic_words(p):
    return ("2", "b") if p == 2 else _YES_NO
