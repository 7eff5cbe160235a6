"""An offline text-infilling task over the default corpus, for the demo of `configs/finetune/demo_infill.py`.

Each text is a standard-library docstring's summary line and the first paragraph of its body, on one line with
single spaces, kept when it has `WORDS` words (train and validation from the default corpus's own module split,
so no module is in both). `finetune.source=demo` of `finetune.seq2seq=blank` reads them (`blank_texts`); the
config's `finetune.blank_ratio` blanks them. Part A of `SOURCE_LEN` and Part B of `TARGET_LEN` tokens fit
glm_tiny's 128 positions and these texts at ratios up to 0.5.

    python -m glm_jax.downstream.demos.infill 0.1 0.5   # BLEU of leaving the validation blanks empty
"""

import re
import sys

import numpy as np
import seqio
import tensorflow as tf

from glm_jax.data import corpus, pipeline, vocab
from glm_jax.downstream import generation_metrics
from glm_jax.downstream.seq2seq import blank_texts, blanks

WORDS = (10, 40)  # words per text, at least and at most
SOURCE_LEN, TARGET_LEN = 80, 48


def texts(split: str) -> list[str]:
    """The demo's texts of `split`, in a fixed order."""
    out = []
    for summary, body in corpus.summarized_docstrings(split):
        paragraph = re.split(r"\n\s*\n", body.strip(), maxsplit=1)[0]
        words = f"{summary} {paragraph}".split()
        if WORDS[0] <= len(words) <= WORDS[1]:
            out.append(" ".join(words))
    return out


def source() -> seqio.FunctionDataSource:
    def dataset_fn(split, shuffle_files, seed=None):
        ds = tf.data.Dataset.from_tensor_slices({"text": np.array(texts(split), object)})
        return ds.shuffle(len(ds), seed=seed) if shuffle_files else ds

    return seqio.FunctionDataSource(dataset_fn, splits=corpus.SPLITS)


def empty_fill_bleu(ratio: float, split: str = "validation") -> float:
    """BLEU of the texts with their blanks left empty, over the blanks the fine-tuning evaluation fills at `ratio`:
    what a model that fills nothing scores."""
    v = vocab.default_vocabulary()
    task = blank_texts.register(v, "demo", ratio=ratio, source_len=SOURCE_LEN, target_len=TARGET_LEN)
    examples = pipeline.task_examples(task, split, None, seed=blanks.EVAL_SEED, trim=False).as_numpy_iterator()
    pairs = [(blanks.filled_text(ex["part_a"], [], [], v), ex["reference"].decode()) for ex in examples]
    return generation_metrics.bleu4(*zip(*pairs, strict=True))


if __name__ == "__main__":
    for value in sys.argv[1:] or ["0.1", "0.5"]:
        print(f"ratio {value}: BLEU of empty blanks (validation) {empty_fill_bleu(float(value)):.2f}")
