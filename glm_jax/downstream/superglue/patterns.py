"""The official patterns and verbalizers of `tasks/superglue/pvp.py`, one function per task: (TF example,
pattern id) -> the pieces of Part A (see `glm_jax.downstream.cloze.questions`), and pattern id -> the
verbalizer words by label. Hold this file against the official `pvp.py`: the strings, their piece
boundaries, the shortenable pieces and the continuous prompts' spots (`PROMPT`, the official `None`; dropped
without prompts) are the same; RTE and CB patterns 0-3 have two segments, as the official `parts_a` and
`parts_b`. ReCoRD's pattern has no spots, as the official.
"""

import tensorflow as tf

from glm_jax.downstream.cloze import MASK, PROMPT, shortenable
from glm_jax.downstream.superglue.text import (
    is_in,
    lowercase_first,
    remove_final_punc,
    rstrip,
    standardize,
)


def boolq(ex, p):
    passage, question = standardize(ex["passage"]), standardize(ex["question"])
    passage, question = shortenable(passage), shortenable(" " + question)
    if p < 2:
        return [PROMPT, passage, PROMPT, " Question:", question, "? Answer:", PROMPT, MASK, "."]
    if p < 4:
        return [PROMPT, passage, " Based on the previous passage,", PROMPT, question, "?", PROMPT, MASK, "."]
    return ["Based on the following passage", PROMPT, question, "?", PROMPT, MASK, ".", PROMPT, passage]


def rte(ex, p):
    """Patterns 0-3 have two segments (hypothesis; blank and premise), truncated in turn as the official."""
    premise = standardize(ex["premise"])
    hypothesis = shortenable(remove_final_punc(standardize(ex["hypothesis"])))
    return {
        0: ([PROMPT, '"', hypothesis, '" ?'], [PROMPT, MASK, ",", PROMPT, ' "', shortenable(premise), '"']),
        1: ([PROMPT, hypothesis, "?"], [PROMPT, MASK, ",", PROMPT, shortenable(" " + premise)]),
        2: ([PROMPT, '"', hypothesis, '" ?'], [PROMPT, MASK, '. "', PROMPT, shortenable(premise), '"']),
        3: ([PROMPT, hypothesis, "?"], [PROMPT, MASK, ".", PROMPT, shortenable(" " + premise)]),
        4: [PROMPT, shortenable(premise), PROMPT, " question:", shortenable(" " + hypothesis.text), " True or False?",
            PROMPT, " answer:", MASK],
    }[p]  # fmt: skip


def cb(ex, p):
    if p < 4:
        return rte(ex, p)
    premise, hypothesis = standardize(ex["premise"]), standardize(ex["hypothesis"])
    return [
        PROMPT,
        shortenable(premise),
        PROMPT,
        " question:",
        shortenable(" " + hypothesis),
        " true, false or neither?",
        PROMPT,
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
        return [PROMPT, '"', c1, '" or "', c2, '"?', PROMPT, premise, joiner, PROMPT, MASK, "."]
    return [PROMPT, c1, " or", " " + c2, "?", PROMPT, premise, joiner, PROMPT, MASK, "."]


def multirc(ex, p):
    passage = shortenable(remove_final_punc(rstrip(standardize(ex["paragraph"]))))
    question = remove_final_punc(rstrip(standardize(ex["question"])))
    answer = standardize(ex["answer"])
    return {
        0: [passage, ".", PROMPT, " Question:", " " + question + "?", PROMPT, " Is it", " " + answer, "?", PROMPT,
            MASK, "."],
        1: [passage, ".", PROMPT, " Question:", " " + question, "?", PROMPT, ' Is the correct answer "', answer, '"?',
            PROMPT, MASK, "."],
        2: [passage, ". Based on the previous passage,", PROMPT, " " + question, "?", PROMPT, ' Is "', answer,
            '" a correct answer?', PROMPT, MASK, "."],
        3: [PROMPT, passage, PROMPT, " " + question, "- [", MASK, "]", PROMPT, answer],
        4: [passage, ".", PROMPT, " Question:", " " + question, "?", PROMPT, " " + answer, "?", PROMPT, MASK, "."],
    }[p]  # fmt: skip


def wic(ex, p):
    s1, s2, word = standardize(ex["sentence1"]), standardize(ex["sentence2"]), ex["word"]
    if p == 0:
        return [PROMPT, shortenable('"' + s1 + '" / "' + s2 + '"'), PROMPT, ' Similar sense of "' + word + '"?', PROMPT,
                MASK, "."]  # fmt: skip
    if p == 1:
        same = " Does " + word + " have the same meaning in both sentences?"
        return [shortenable(s1), PROMPT, shortenable(" " + s2), PROMPT, same, PROMPT, MASK]
    return [PROMPT, word, " .", PROMPT, ' Sense (1) (a) "', shortenable(s1), '"', PROMPT, " (", MASK, ') "', s2, '"']


def wsc(ex, p):
    pronoun = "'*" + ex["span2_text"] + "*'"
    text = shortenable(ex["marked_text"])
    return {
        0: [PROMPT, text, PROMPT, " The pronoun " + pronoun + " refers to", PROMPT, MASK, "."],
        1: [PROMPT, text, PROMPT, " In the previous sentence, the pronoun " + pronoun + " refers to", PROMPT, MASK,
            "."],
        2: [PROMPT, text, PROMPT, " Question: In the passage above, what does the pronoun " + pronoun + " refer to?",
            PROMPT, " Answer:", MASK, "."],
    }[p]  # fmt: skip


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
