"""The GPU device check: the train step on the xla and gpu_flash attention paths, side by side, on one GPU.

    python -m benchmarks.gpu [--cases glm_base:512,glm_large:2048,...] [--steps 5] [--budget_s 420] [--dry]

For each case (glm_base, glm_large and glm_2b at seq 512 and 2048 by default; bfloat16, scanned
layers, no attention dropout, the remat a case needs, logits at the Part B positions only, as the
short-span task bounds them) and each path, it builds the real `Trainer`, compiles the step, runs
it once, times `--steps` steps of `Trainer.train_step` and prints the step time, tokens/s,
TFLOP/s per device, MFU against the chip's dense bf16 peak (glm_jax/training/chips.py) and the
step's peak memory as XLA's buffer assignment gives it (arguments + outputs - donated +
temporaries). A path that fails prints why, and the run goes on; cases left when `--budget_s` has
passed are skipped. Needs jax (jax[cuda12] on GPU), flax, optax and tokamax: no TensorFlow.

`--dry` runs the same code on CPU at tiny shapes (gpu_flash then runs its kernels' XLA versions):
the test suite runs it.
"""

import argparse
import pathlib
import time

import jax
import numpy as np

from benchmarks.train_step import timed_steps
from glm_jax.config import load_config_file, model_config
from glm_jax.data import span_lengths
from glm_jax.training import flops, sharding
from glm_jax.training.synthetic import TOKENS, synthetic_batch, synthetic_pairs
from glm_jax.training.trainer import Trainer

_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
CASES = "glm_base:512,glm_base:2048,glm_large:512,glm_large:2048,glm_2b:512,glm_2b:2048"
DRY_CASES = "glm_tiny:128"
TOKENS_PER_STEP = 32_768  # rows = TOKENS_PER_STEP // seq_len (64 x 512, 16 x 2048)
REMAT = {"glm_2b": "full"}  # what a layer keeps for the backward pass; others: save_dots
VOCAB = {"glm_base": 30522, "glm_large": 30522, "glm_2b": 50257}  # BERT, GPT-2 BPE; else the shipped 8000
PATHS = ("xla", "gpu_flash")
_GIB = 1 << 30


def case_config(name: str, seq_len: int, attention: str, dry: bool):
    """Config `name` at `seq_len` on attention path `attention`, set up as the check runs it."""
    c = load_config_file(_CONFIGS / f"{name}.py")
    rows = 2 if dry else TOKENS_PER_STEP // seq_len
    c.data.update(batch_size=rows, seq_len=seq_len)
    c.model.update(dtype="bfloat16", scan_layers=True, remat=REMAT.get(name, "save_dots"), max_len=seq_len)
    c.model.update(attention=attention, attention_dropout=0.0)
    if dry:
        c.model.update(num_layers=2, hidden=64, heads=2)
    return c


def _step_memory(compiled) -> int:
    """Peak bytes of a compiled step by XLA's buffer assignment: arguments + outputs - donated + temporaries."""
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes


def _label(trainer: Trainer) -> str:
    g = trainer.glm_config
    if g.attention != "gpu_flash":
        return g.attention
    return f"gpu_flash:{g.gpu_kernel}" + ("(xla)" if g.gpu_reference else "")


def measure(name: str, seq_len: int, attention: str, steps: int, peak: float, dry: bool) -> float:
    """Prints one path's line; returns its seconds per step."""
    c = case_config(name, seq_len, attention, dry)
    vocab = 8000 if dry else VOCAB.get(name, 8000)
    max_scored = span_lengths.short_spans_max_scored(seq_len)  # the synthetic rows are a short-span layout
    trainer = Trainer(c, model_config(c, vocab, TOKENS), sharding.make_mesh(), max_scored=max_scored)
    rows = c.data.batch_size
    batch = trainer.device_batch(synthetic_batch(rows, seq_len, vocab, np.random.default_rng(0)))
    state = trainer.init_state(0)
    start = time.perf_counter()
    memory = _step_memory(trainer.lower_train_step(state, batch).compile())
    state, _ = timed_steps(trainer, state, batch, 1)  # the compiled step's first run
    first_s = time.perf_counter() - start
    state, step_s = timed_steps(trainer, state, batch, steps)
    pairs = synthetic_pairs(rows, seq_len)
    model_flops = flops.train_flops(trainer.glm_config, rows * seq_len, pairs, trainer.logit_tokens(rows, seq_len))
    tflops = model_flops / step_s / jax.device_count() / 1e12
    mfu = 100 * tflops * 1e12 / peak
    print(
        f"{name:<9} L={seq_len:<5} B={rows:<3} {_label(trainer):<22} | {trainer.num_params() / 1e6:7.1f}M params "
        f"| remat {c.model.remat:<9} | compile+1st {first_s:6.1f}s | {step_s * 1e3:8.1f} ms/step "
        f"| {rows * seq_len / step_s:10,.0f} tokens/s | {tflops:8.3f} TFLOP/s/device | MFU {mfu:5.1f}% "
        f"| peak {memory / _GIB:6.2f} GiB",
        flush=True,
    )
    return step_s


def _peak(dry: bool) -> tuple[float, str]:
    """The peak FLOP/s MFU is measured against, and where it comes from (dry: a small CPU matmul)."""
    if dry:
        return flops.measured_matmul_peak(size=512, trials=3), "CPU matmul 512, best of 3 (dry)"
    return flops.peak_flops_per_device()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="", help=f"config:seq_len,... (default {CASES}; dry: {DRY_CASES})")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path")
    parser.add_argument("--budget_s", type=float, default=420.0, help="start no case after this many seconds")
    parser.add_argument("--dry", action="store_true", help="tiny shapes on CPU: the same code, for the test suite")
    args = parser.parse_args()
    if args.dry:
        jax.config.update("jax_platforms", "cpu")
    cases = args.cases or (DRY_CASES if args.dry else CASES)
    steps = 1 if args.dry else args.steps
    peak, source = _peak(args.dry)
    device = jax.devices()[0]
    print(f"devices: {jax.device_count()} x {device.device_kind}; peak {peak / 1e12:.1f} TFLOP/s per device ({source})")
    print(f"jax {jax.__version__}; {steps} timed steps per path; bf16, scanned layers, Part B logits")
    began = time.perf_counter()
    for case in cases.split(","):
        name, seq_len = case.split(":")
        if time.perf_counter() - began > args.budget_s:
            print(f"{name:<9} L={seq_len:<5} skipped: past --budget_s={args.budget_s:.0f}", flush=True)
            continue
        times = {}
        for attention in PATHS:
            try:
                times[attention] = measure(name, int(seq_len), attention, steps, peak, args.dry)
            except Exception as error:  # the check goes on: a failing path is a result too
                print(f"{name:<9} L={seq_len:<5} {attention:<28} | failed: {type(error).__name__}: {error}"[:2000])
        if len(times) == 2:
            print(f"{name:<9} L={seq_len:<5} speed-up gpu_flash / xla: {times['xla'] / times['gpu_flash']:.2f}x")


if __name__ == "__main__":
    main()
