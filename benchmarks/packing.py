"""Share of non-padding tokens with and without packing, on fine-tuning-sized examples.

    python -m benchmarks.packing [--seq_len 512]

The examples: every paragraph of the default corpus's validation split as its own document, one
short-span example per document (`concatenate=False`), as fine-tuning sets look (tens to a few
hundred tokens each). Both rows are built by the same SeqIO task; only `pack` differs.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import seqio  # noqa: E402
import tensorflow as tf  # noqa: E402

from glm_jax.data import corpus, pipeline, tasks, vocab  # noqa: E402


def paragraphs_source() -> seqio.FunctionDataSource:
    texts = [p.strip() for doc in corpus.documents("validation") for p in doc.split("\n\n") if len(p.strip()) > 20]

    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_tensor_slices({"text": texts})

    return seqio.FunctionDataSource(dataset_fn, splits=["train"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq_len", type=int, default=512)
    args = parser.parse_args()
    tasks.register_pretraining_task(
        "bench_paragraphs", paragraphs_source(), vocab.default_vocabulary(), concatenate=False
    )
    for pack in (False, True):
        rows = list(
            pipeline.get_dataset(
                "bench_paragraphs", "train", args.seq_len, seed=0, shuffle=False, repeat=False, pack=pack
            ).as_numpy_iterator()
        )
        segments = np.stack([r["segment_ids"] for r in rows])
        examples = int(sum(s.max() for s in segments))
        print(
            f"pack={pack!s:5s}: {examples:,} examples in {len(rows):,} rows of {args.seq_len}; "
            f"non-padding tokens {np.mean(segments > 0):.1%}"
        )


if __name__ == "__main__":
    main()
