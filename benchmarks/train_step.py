"""Measures train-step time and tokens/s on this machine (synthetic batches): logits at every
position ("full", train.scored_capacity=0) against logits only at the scored Part B positions
("scored", the derived capacity), in the same run.

    python -m benchmarks.train_step [--cases glm_tiny:16x128,glm_tiny:8x512,glm_base:8x512]
                                    [--logits both] [--rounds 3] [--steps 3] [--vocab_size 8000]

Each case (config:batch x seq_len) builds one trainer per path, compiles and warms each up for one
step, then times `--rounds` rounds of `--steps` steps per path, the paths alternating inside a
round and their order swapping between rounds, so that drift of a shared machine falls on both.
A path's time is its best round. The batch is a real blank-infilling layout (85% Part A, then one
Part B span) with random token ids, so the cost is that of training, without the data pipeline.
"""

import argparse
import pathlib
import time

import jax
import numpy as np

from glm_jax.config import load_config_file, model_config
from glm_jax.data import span_lengths
from glm_jax.training import sharding
from glm_jax.training.synthetic import TOKENS, synthetic_batch
from glm_jax.training.trainer import Trainer

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
PATHS = {"full": 0, "scored": -1}  # train.scored_capacity of each path


def build(name: str, batch: int, seq_len: int, vocab_size: int, capacity: int):
    """(trainer, state, device batch) of config `name` with train.scored_capacity = `capacity`."""
    c = load_config_file(_CONFIGS / f"{name}.py")
    c.data.batch_size, c.data.seq_len, c.train.scored_capacity = batch, seq_len, capacity
    bound = span_lengths.short_spans_max_scored(seq_len)  # the synthetic rows are a short-span layout
    trainer = Trainer(c, model_config(c, vocab_size, TOKENS), sharding.make_mesh(), max_scored=bound)
    device_batch = trainer.device_batch(synthetic_batch(batch, seq_len, vocab_size, np.random.default_rng(0)))
    return trainer, trainer.init_state(0), device_batch


def timed_steps(trainer, state, batch, steps: int):
    """(state, seconds per step) over `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = trainer.train_step(state, batch)
    jax.block_until_ready(metrics)
    return state, (time.perf_counter() - start) / steps


def measure(name: str, batch: int, seq_len: int, paths: list[str], rounds: int, steps: int, vocab_size: int) -> None:
    runs = {}  # path: [trainer, state, device batch, first step seconds, seconds per step of each round]
    for path in paths:
        trainer, state, device_batch = build(name, batch, seq_len, vocab_size, PATHS[path])
        state, first_s = timed_steps(trainer, state, device_batch, 1)  # compiles
        runs[path] = [trainer, state, device_batch, first_s, []]
    for r in range(rounds):
        for path in paths if r % 2 == 0 else paths[::-1]:
            run = runs[path]
            run[1], step_s = timed_steps(run[0], run[1], run[2], steps)
            run[4].append(step_s)
    best = {path: min(run[4]) for path, run in runs.items()}
    for path, (trainer, _, _, first_s, _) in runs.items():
        slots = trainer.scored_capacity or seq_len
        print(
            f"{name:10s} {trainer.num_params():>12,} params | batch {batch} x {seq_len} | {path:6s} logits at "
            f"{slots:4d}/{seq_len} per row | first step {first_s:6.1f}s | {best[path] * 1e3:8.1f} ms/step"
            f" | {batch * seq_len / best[path]:10,.0f} tokens/s",
            flush=True,
        )
    if len(best) == 2:
        print(f"{name:10s} batch {batch} x {seq_len}: tokens/s scored / full = {best['full'] / best['scored']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="glm_tiny:16x128,glm_tiny:8x512,glm_base:8x512", help="config:BxL,...")
    parser.add_argument("--logits", default="both", choices=["both", *PATHS], help="the paths to time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per path per round")
    parser.add_argument("--vocab_size", type=int, default=8000, help="8000: the shipped vocabulary")
    args = parser.parse_args()
    paths = list(PATHS) if args.logits == "both" else [args.logits]
    print(f"devices: {jax.devices()}; vocabulary {args.vocab_size} ids; {args.rounds} rounds of {args.steps} steps")
    for case in args.cases.split(","):
        name, shape = case.split(":")
        batch, seq_len = (int(x) for x in shape.split("x"))
        measure(name, batch, seq_len, paths, args.rounds, args.steps, args.vocab_size)


if __name__ == "__main__":
    main()
