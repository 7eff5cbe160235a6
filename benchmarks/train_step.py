"""Measures train-step time and tokens/s for model configs on this machine (synthetic batches).

    python -m benchmarks.train_step [--configs glm_tiny,glm_base] [--batch 8] [--seq_len 512] [--steps 5]
                                    [--vocab_size 8000]

Each config is compiled once, warmed up for one step, then timed over `--steps` steps; the batch
is a real blank-infilling layout (Part A, then Part B spans) with random token ids, so the cost
is that of training, without the data pipeline.
"""

import argparse
import pathlib
import time

import jax
import numpy as np

from glm_jax.config import load_config_file
from glm_jax.training import sharding
from glm_jax.training.synthetic import TOKENS, synthetic_batch
from glm_jax.training.trainer import Trainer, model_config

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def measure(name: str, batch: int, seq_len: int, steps: int, vocab_size: int) -> None:
    c = load_config_file(_CONFIGS / f"{name}.py")
    c.data.batch_size, c.data.seq_len = batch, seq_len
    trainer = Trainer(c, model_config(c, vocab_size, TOKENS), sharding.make_mesh())
    state = trainer.init_state(0)
    device_batch = trainer.device_batch(synthetic_batch(batch, seq_len, vocab_size, np.random.default_rng(0)))
    start = time.perf_counter()
    state, metrics = trainer.train_step(state, device_batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = trainer.train_step(state, device_batch)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / steps
    print(
        f"{name:10s} {trainer.num_params():>12,} params | batch {batch} x {seq_len} | first step {compile_s:6.1f}s"
        f" | {step_s * 1e3:8.1f} ms/step | {batch * seq_len / step_s:10,.0f} tokens/s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="glm_tiny,glm_base")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--vocab_size", type=int, default=8000, help="8000: the shipped vocabulary")
    args = parser.parse_args()
    print(f"devices: {jax.devices()}; vocabulary {args.vocab_size} ids")
    for name in args.configs.split(","):
        measure(name, args.batch, args.seq_len, args.steps, args.vocab_size)


if __name__ == "__main__":
    main()
