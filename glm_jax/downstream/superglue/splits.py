"""Split-specific examples of the official readers: mirrored COPA, one ReCoRD question per gold answer,
WSC's candidates (these need the whole split) and True-only training examples."""

import tensorflow as tf

from glm_jax.downstream.superglue.recipes import RECORD_TRAIN_CANDIDATES
from glm_jax.downstream.superglue.text import is_in, sort_strings, standardize, standardize_text


def record_plain(ex):
    """Entities and answers made plain and deduplicated, the entities then sorted (official RecordProcessor)."""
    entities = sort_strings(tf.unique(standardize(ex["entities"])).y)
    return ex | {"entities": entities, "answers": tf.unique(standardize(ex["answers"])).y}


def copa_train(ds):
    """Each example, then its mirror (choices swapped, label flipped), as the official CopaProcessor."""

    def both(ex):
        mirror = ex | {"choice1": ex["choice2"], "choice2": ex["choice1"], "label": 1 - ex["label"]}
        return tf.data.Dataset.from_tensors(ex).concatenate(tf.data.Dataset.from_tensors(mirror))

    return ds.flat_map(both)


def record_train(ds):
    """One example per gold answer: that answer, then the other (non-gold) entities in order, or 9 of them
    drawn at random where there are more (the official RecordProcessor; a seed per query here)."""

    def per_answer(ex):
        answers, entities = ex["answers"], ex["entities"]
        negatives = tf.boolean_mask(entities, ~is_in(entities, answers))
        most = RECORD_TRAIN_CANDIDATES - 1

        def one(k, answer):
            seed = tf.stack([tf.cast(ex["idx"]["query"], tf.int64), k])
            drawn = tf.gather(negatives, tf.argsort(tf.random.stateless_uniform(tf.shape(negatives), seed)))
            chosen = tf.cond(tf.size(negatives) > most, lambda: drawn[:most], lambda: negatives)
            return ex | {"entities": tf.concat([[answer], chosen], 0), "answers": tf.reshape(answer, [1])}

        return tf.data.Dataset.from_tensor_slices((tf.range(tf.size(answers, tf.int64)), answers)).map(one)

    return ds.flat_map(per_answer)


def mark_pronoun(text: str, index: int, pronoun: str) -> str:
    """`text` with the pronoun word at `index` between asterisks, its index repaired as the official WscProcessor
    does (off by one, or glued to the next characters). A pronoun not found is marked at `index` if in range
    (the official asserts; TFDS's mock data has random spans)."""
    words = text.split()
    if index < len(words) and words[index] != pronoun:
        for offset in (-1, 1):
            if 0 <= index + offset < len(words) and words[index + offset] == pronoun:
                index += offset
        if words[index] != pronoun and words[index].startswith(pronoun):
            words[index : index + 1] = [pronoun, words[index][len(pronoun) :]]
    if 0 <= index < len(words):
        words[index] = f"*{words[index]}*"
    return " ".join(words)


def wsc_examples(rows: list[dict], train: bool) -> list[dict]:
    """WSC examples with `marked_text` and `candidates`: the example's span1 text, then the other span1 texts
    (distinct, case-insensitively) of the examples with the same text and pronoun index; train keeps the True ones."""
    spans: dict[tuple, list[str]] = {}
    for row in rows:
        spans.setdefault((row["text"], row["span2_index"]), []).append(row["span1_text"])
    examples = []
    for row in rows:
        if train and row["label"] != 1:
            continue
        candidates = {}
        for span in [row["span1_text"], *spans[row["text"], row["span2_index"]]]:
            candidates.setdefault(span.lower(), span)
        text = standardize_text(row["text"])
        marked = mark_pronoun(text, row["span2_index"], row["span2_text"])
        examples.append(row | {"marked_text": marked, "candidates": list(candidates.values())})
    return examples


def as_python(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if hasattr(value, "item") else value
