"""Text as the official SuperGLUE readers and patterns handle it (TF ops over scalar or 1-D `tf.string`)."""

import tensorflow as tf

# The official punctuation_standardization.
_PUNCTUATION = {"\u201c": '"', "\u201d": '"', "\u2019": "'", "\u2018": "'", "\u2013": "-"}


def standardize(text):
    """Curly quotes and en dashes made plain, as the official `punctuation_standardization`."""
    for old, new in _PUNCTUATION.items():
        text = tf.strings.regex_replace(text, old, new)
    return text


def standardize_text(text: str) -> str:
    return text.translate(str.maketrans(_PUNCTUATION))


def rstrip(text):
    return tf.strings.regex_replace(text, r"\s+$", "")


def remove_final_punc(text):
    """Python's `text.rstrip(string.punctuation)`."""
    return tf.strings.regex_replace(text, "[[:punct:]]+$", "")


def lowercase_first(text):
    n = tf.strings.length(text, unit="UTF8_CHAR")
    first = tf.strings.lower(tf.strings.substr(text, 0, 1, unit="UTF8_CHAR"), encoding="utf-8")
    return first + tf.strings.substr(text, tf.minimum(1, n), n, unit="UTF8_CHAR")


def question_id(paragraph, question):
    """A question id unique across a split: its passage's index * 10**6 + its own."""
    return tf.cast(paragraph, tf.int64) * 1_000_000 + tf.cast(question, tf.int64)


def sort_strings(texts):
    """A 1-D `tf.string` of distinct texts in Python's order (by code points), as `sorted` gives them."""
    codes = tf.strings.unicode_decode(texts, "UTF-8").to_tensor(default_value=-1)  # a shorter text sorts first
    differ = tf.not_equal(codes[:, None, :], codes[None, :, :])  # [N, N, chars]
    first = differ & (tf.cumsum(tf.cast(differ, tf.int32), axis=-1, exclusive=True) == 0)
    less = tf.reduce_any(first & (codes[:, None, :] < codes[None, :, :]), axis=-1)  # less[i, j]: i before j
    return tf.gather(texts, tf.argsort(tf.reduce_sum(tf.cast(less, tf.int32), axis=0)))


def is_in(texts, others):
    return tf.reduce_any(tf.equal(texts[:, None], others[None, :]), axis=1)
