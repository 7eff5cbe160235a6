"""Data-pipeline throughput on one CPU core: output tokens/s per objective, TF vs plain NumPy.

    python -m benchmarks.pipeline [--seq_len 512] [--examples 20000]

(a) The blank-infilling transform alone, over rows pre-tokenized from the default corpus, for each
    objective: the project's stateless TF transform (in a tf.data graph, one thread, on batches of
    64 rows as the tasks run it) beside a
    straightforward per-example NumPy implementation of the same construction, timed in the same
    run. Output tokens are the positions of the built examples (Part A + Part B).
(b) End to end from raw text: the registered SeqIO task (tokenization, rows, infilling, padding
    to [L]) on one thread, counting non-padding output tokens.
"""

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from glm_jax.data import corpus, pipeline, span_lengths, vocab  # noqa: E402
from glm_jax.data.objectives import DocumentLevel, SentenceLevel, ShortSpans  # noqa: E402

OBJECTIVES = {"short_spans": ShortSpans(), "document": DocumentLevel(), "sentence": SentenceLevel()}


def one_core() -> tf.data.Options:
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.autotune.enabled = False
    return options


def pretokenized_rows(text_length: int, tokens, limit: int = 4000) -> np.ndarray:
    """`[rows, text_length]`: the train split tokenized, joined with eos, cut, each row led by [CLS]."""
    v = vocab.default_vocabulary()
    stream = []
    for document in corpus.documents("train"):
        stream += v.encode(document) + [tokens.eos]
        if len(stream) >= limit * text_length:
            break
    body = text_length - 1
    rows = np.array(stream[: len(stream) // body * body], np.int32).reshape(-1, body)
    return np.concatenate([np.full((len(rows), 1), tokens.cls, np.int32), rows], axis=1)


def tf_transform(objective, rows, info, seq_len, count, options, rows_per_batch=64) -> tuple[float, int]:
    """Seconds and output tokens for `count` examples built by the TF transform, as the tasks run it
    (`preprocessors.blank_infilling`: batches of `rows_per_batch` ragged rows, one seed each)."""
    task_mask = True
    texts = tf.data.Dataset.from_tensor_slices(rows).repeat().take(count).ragged_batch(rows_per_batch)
    seeds = tf.data.Dataset.random(seed=0).batch(2).map(lambda s: tf.cast(s % (1 << 31), tf.int32))
    ds = tf.data.Dataset.zip(texts, seeds)
    ds = ds.map(lambda text, seed: tf.size(objective(text, seed, seq_len, info, task_mask)["inputs"].flat_values))
    ds = ds.with_options(options)
    start = time.perf_counter()
    total = int(ds.reduce(np.int64(0), lambda acc, n: acc + tf.cast(n, tf.int64)))
    return time.perf_counter() - start, total


# --- The same constructions, written plainly in NumPy, one example at a time. ---


def np_assemble(text, starts, lengths, order, marker, sop, eop):
    part_a, cursor = [], 0
    for start, length in zip(starts, lengths, strict=True):
        part_a += [text[cursor:start], [marker]]
        cursor = start + length
    part_a.append(text[cursor:])
    part_a = np.concatenate(part_a)
    spans = [text[starts[i] : starts[i] + lengths[i]] for i in order]
    b_inputs = np.concatenate([np.r_[sop, s] for s in spans]) if spans else np.zeros(0, np.int32)
    b_targets = np.concatenate([np.r_[s, eop] for s in spans]) if spans else np.zeros(0, np.int32)
    span_ids = np.concatenate([np.full(len(s) + 1, i + 1) for s, i in zip(spans, order, strict=True)]) if spans else []
    zeros = np.zeros(len(part_a), np.int32)
    return {
        "inputs": np.concatenate([part_a, b_inputs]),
        "targets": np.concatenate([zeros, b_targets]),
        "loss_weights": np.concatenate([zeros, np.ones(len(b_targets), np.int32)]),
        "span_ids": np.concatenate([zeros, span_ids]).astype(np.int32),
    }


def np_short_spans(text, rng, seq_len, info, pmf):
    n = len(text)
    region, budget = n - 1, (seq_len - n) // 2
    draws = rng.choice(len(pmf), size=budget, p=pmf) + 1
    covered = np.cumsum(draws)
    k = min(int((covered < math.ceil(0.15 * n)).sum()) + 1, int((covered + np.arange(budget) <= region).sum()))
    lengths = rng.permutation(draws[:k])
    places = np.sort(rng.integers(0, region - lengths.sum() - k + 2, k))
    starts = 1 + places + np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    t = info.tokens
    return np_assemble(text, starts, lengths, rng.permutation(k), t.mask, t.sop, t.eop)


def np_document(text, rng, seq_len, info, objective):
    n = len(text)
    region = n - 1
    length = rng.integers(max(1, math.ceil(objective.min_ratio * region)), region + 1)
    several = (text[:-1] == info.tokens.eos).any()
    infill = rng.random() < objective.infill_prob and not several
    start = 1 + rng.integers(0, region - length + 1) if infill else n - length
    t = info.tokens
    return np_assemble(text, [start], [length], [0], t.gmask, t.sop, t.eop)


def np_sentence(text, rng, seq_len, info):
    n = len(text)
    ends = info.sentence_ends[text] | (text == info.tokens.eos)
    sentence = np.concatenate([[0], np.cumsum(ends)[:-1]])
    in_text = (np.arange(n) >= 1) & (text != info.tokens.eos)
    spans = []
    for s in rng.permutation(sentence[-1] + 1):
        where = np.flatnonzero((sentence == s) & in_text)
        if len(where):
            spans.append((where[0], len(where)))
            if sum(length for _, length in spans) >= math.ceil(0.15 * n) or len(spans) == (seq_len - n) // 2:
                break
    spans.sort()
    t = info.tokens
    starts, lengths = [s for s, _ in spans], [length for _, length in spans]
    return np_assemble(text, starts, lengths, rng.permutation(len(spans)), t.smask, t.sop, t.eop)


def numpy_transform(name, objective, rows, info, seq_len, count) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    pmf = np.exp(span_lengths.span_length_log_pmf(OBJECTIVES["short_spans"].mean_span).astype(np.float64))
    build = {
        "short_spans": lambda text: np_short_spans(text, rng, seq_len, info, pmf / pmf.sum()),
        "document": lambda text: np_document(text, rng, seq_len, info, objective),
        "sentence": lambda text: np_sentence(text, rng, seq_len, info),
    }[name]
    start = time.perf_counter()
    total = sum(len(build(rows[i % len(rows)])["inputs"]) for i in range(count))
    return time.perf_counter() - start, total


def end_to_end(task, seq_len, count, options) -> tuple[float, int]:
    ds = pipeline.get_dataset(task, "train", seq_len, seed=0, shuffle=False, repeat=True).take(count)
    ds = ds.map(lambda ex: tf.reduce_sum(tf.cast(ex["segment_ids"] > 0, tf.int64))).with_options(options)
    start = time.perf_counter()
    total = int(ds.reduce(np.int64(0), lambda acc, n: acc + n))
    return time.perf_counter() - start, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    options = one_core()
    info = vocab.vocab_info(vocab.default_vocabulary())
    print(f"one core, L = {args.seq_len}, {args.examples:,} examples per measurement; output tokens/s")
    print(f"{'(a) transform':24s} {'TF (ours)':>14s} {'NumPy':>14s} {'ratio':>7s}")
    for name, objective in OBJECTIVES.items():
        rows = pretokenized_rows(objective.text_length(args.seq_len), info.tokens)
        tf_transform(objective, rows, info, args.seq_len, 500, options)  # trace and warm up
        tf_s, tf_tokens = tf_transform(objective, rows, info, args.seq_len, args.examples, options)
        np_count = max(args.examples // 5, 1000)
        np_s, np_tokens = numpy_transform(name, objective, rows, info, args.seq_len, np_count)
        tf_rate, np_rate = tf_tokens / tf_s, np_tokens / np_s
        print(f"{name:24s} {tf_rate:14,.0f} {np_rate:14,.0f} {tf_rate / np_rate:6.1f}x", flush=True)
    print("(b) end to end from raw text (tokenize, rows, infilling, pad)")
    for task in ("glm_default_short_spans", "glm_default_10b"):
        end_to_end(task, args.seq_len, 200, options)
        seconds, tokens = end_to_end(task, args.seq_len, args.examples // 4, options)
        print(f"{task:24s} {tokens / seconds:14,.0f}", flush=True)


if __name__ == "__main__":
    main()
