"""An offline summarization task over the default corpus, for the seq2seq fine-tuning demo.

The source is a standard-library docstring's body, the target its summary line (PEP 257: the first
line, one sentence, then a blank line), with train and validation from the default corpus's own
module split (no module in both). Importing this module registers `glm_default_summary` with the
default vocabulary, Part A of `SOURCE_LEN` and targets of `TARGET_LEN` tokens (eop included): the
lengths of `configs/finetune/demo_summary.py`.

    python -m glm_jax.downstream.demos.summary   # ROUGE of the lead baseline on validation
"""

import re

import numpy as np
import seqio
import tensorflow as tf

from glm_jax.data import corpus, vocab
from glm_jax.downstream import generation_metrics, seq2seq

TASK = "glm_default_summary"
SOURCE_LEN, TARGET_LEN = 96, 32


def pairs(split: str) -> dict[str, np.ndarray]:
    """`body` and `summary` of every summarized docstring of `split`, in a fixed order."""
    bodies, summaries = zip(*[(b, s) for s, b in corpus.summarized_docstrings(split)], strict=True)
    return {"body": np.array(bodies, object), "summary": np.array(summaries, object)}


def source() -> seqio.FunctionDataSource:
    def dataset_fn(split, shuffle_files, seed=None):
        ds = tf.data.Dataset.from_tensor_slices(pairs(split))
        return ds.shuffle(len(ds), seed=seed) if shuffle_files else ds

    return seqio.FunctionDataSource(dataset_fn, splits=corpus.SPLITS)


def lead(text: str) -> str:
    """The first sentence of `text` (up to the first `.`, `!` or `?` before whitespace, or its end)."""
    flat = " ".join(text.split())
    return re.split(r"(?<=[.!?])\s", flat, maxsplit=1)[0]


def lead_baseline(split: str = "validation") -> dict:
    """ROUGE of each body's first sentence as its summary: what a summary that copies reaches."""
    data = pairs(split)
    return generation_metrics.rouge([lead(b) for b in data["body"]], list(data["summary"]))


SPEC = seq2seq.Seq2Seq(source=lambda ex: ex["body"], target=lambda ex: ex["summary"])

seq2seq.register_seq2seq_task(
    TASK, source(), vocab.default_vocabulary(), SPEC, source_len=SOURCE_LEN, target_len=TARGET_LEN
)

if __name__ == "__main__":
    scores = lead_baseline()
    print("lead baseline (validation): " + " | ".join(f"{k} {v:.2f}" for k, v in scores.items()))
