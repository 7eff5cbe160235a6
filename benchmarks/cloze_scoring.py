"""Cloze scoring speed: questions/s with Part A cached vs one full forward per candidate answer.

    python -m benchmarks.cloze_scoring [--models glm_tiny,glm_base] [--batch 8] [--part_a 400]
                                       [--choices 10] [--max_answer 5] [--rounds 2]

ReCoRD-like by default: each question has a Part A of `--part_a` random tokens with one [MASK]
and `--choices` candidate answers of 1..`--max_answer` random tokens each, plus eop. For each
model (random weights of its config's shape, the default vocabulary), a batch of questions is
scored twice in the same run:
- cached: `scoring.choice_log_probs` (Part A once into the KV cache, then all answers side by side);
- full: `scoring.full_forward_log_probs` (one full forward over Part A + answer per candidate).
Both are jitted and compiled before timing; their scores are compared (atol 1e-4, float32).
"""

import argparse
import dataclasses
import functools
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from glm_jax import config as config_lib  # noqa: E402
from glm_jax.config import model_config  # noqa: E402
from glm_jax.data import vocab  # noqa: E402
from glm_jax.downstream.cloze import scoring  # noqa: E402
from glm_jax.model.glm import init_params  # noqa: E402

ATOL = 1e-4


def question_batch(rng, tokens, vocab_size: int, batch: int, part_a: int, choices: int, max_answer: int) -> dict:
    """Questions `[CLS] ... [MASK] ... eos` of `part_a` tokens (one Part A layout each, shared by every
    answer); answers of 1..`max_answer` tokens + eop."""
    low = max(dataclasses.astuple(tokens)) + 1  # no command tokens among the random ids
    inputs = rng.integers(low, vocab_size, (batch, part_a), dtype=np.int32)
    inputs[:, 0], inputs[:, part_a // 2], inputs[:, -1] = tokens.cls, tokens.mask, tokens.eos
    lengths = rng.integers(1, max_answer + 1, (batch, choices), dtype=np.int32) + 1  # + eop
    choice_ids = rng.integers(low, vocab_size, (batch, choices, max_answer + 1), dtype=np.int32)
    choice_ids[np.arange(max_answer + 1) >= lengths[..., None]] = 0
    np.put_along_axis(choice_ids, lengths[..., None] - 1, tokens.eop, axis=-1)
    return {
        "inputs": inputs[:, None],
        "segment_ids": np.ones_like(inputs)[:, None],
        "choice_ids": choice_ids,
        "choice_lengths": lengths,
        "choice_part_a": np.zeros_like(lengths),
    }


def timed(fn, params, batch, rounds: int):
    """Scores of `fn` and its mean seconds per call over `rounds` calls, compiled before timing."""
    fn = fn.lower(params, batch).compile()
    start = time.perf_counter()
    for _ in range(rounds):
        scores = fn(params, batch)
    jax.block_until_ready(scores)
    return np.asarray(scores), (time.perf_counter() - start) / rounds


def measure(name: str, args) -> None:
    c = config_lib.load_config_file(f"configs/{name}.py")
    c.model.max_len = max(c.model.max_len, c.data.seq_len, args.part_a + args.max_answer + 1)
    v = vocab.default_vocabulary()
    tokens = v.command_tokens
    glm_config = model_config(c, v.vocab_size, tokens)
    params = nn.unbox(init_params(glm_config, jax.random.key(0), 16))
    rng = np.random.default_rng(0)
    batch = question_batch(rng, tokens, v.vocab_size, args.batch, args.part_a, args.choices, args.max_answer)
    batch = jax.device_put(batch)

    cached_fn = jax.jit(functools.partial(scoring.choice_log_probs, glm_config, sop=tokens.sop))
    full_fn = jax.jit(functools.partial(scoring.full_forward_log_probs, glm_config, sop=tokens.sop))
    cached, cached_s = timed(cached_fn, params, batch, args.rounds)
    full, full_s = timed(full_fn, params, batch, args.rounds)
    diff = float(np.max(np.abs(cached - full)))

    print(
        f"{name:10s} {sum(x.size for x in jax.tree.leaves(params)):>12,} {args.batch / cached_s:12.2f} "
        f"{args.batch / full_s:12.2f} {full_s / cached_s:8.1f}x {diff:12.2e}   {'yes' if diff <= ATOL else 'NO'}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="glm_tiny,glm_base")
    parser.add_argument("--batch", type=int, default=8, help="questions per batch")
    parser.add_argument("--part_a", type=int, default=400, help="Part A tokens per question")
    parser.add_argument("--choices", type=int, default=10, help="candidate answers per question")
    parser.add_argument("--max_answer", type=int, default=5, help="longest answer in tokens, before eop")
    parser.add_argument("--rounds", type=int, default=2, help="timed calls of each function")
    args = parser.parse_args()
    print(
        f"{jax.devices()[0].platform}, batch {args.batch}, Part A {args.part_a} tokens, {args.choices} answers "
        f"of 1-{args.max_answer} tokens + eop, {args.rounds} rounds"
    )
    print(
        f"{'model':10s} {'parameters':>12s} {'cached q/s':>12s} {'full q/s':>12s} {'speedup':>9s} "
        f"{'max |diff|':>12s}   same (atol {ATOL:g})"
    )
    for name in args.models.split(","):
        measure(name, args)


if __name__ == "__main__":
    main()
