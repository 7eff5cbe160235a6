"""Model FLOPs of a train step and the peak they are measured against (MFU).

Per train step, counting a multiply-add as 2 FLOPs and the backward pass as twice the forward:

    flops = 6 * (N_layers * T  +  vocab * hidden * S)  +  12 * layers * hidden * (visible q-k pairs)

N_layers = matmul parameters of the layers (12 * hidden^2 each: QKV, attention output, the 4h MLP;
embedding lookups and biases are not matmuls), T = tokens in the batch, and vocab * hidden the tied
output projection, computed at S positions: only at the scored (Part B) positions gathered into
C slots per row, S = rows * C (`Trainer.logit_tokens`, see `losses.scored_positions`), or at all
of them, S = T, without the gather. The attention term counts QK^T and PV (2 * hidden FLOPs per
visible query-key pair each, forward) at the real density of the GLM mask (Part A bidirectional,
Part B causal, padding nothing). MFU = flops / step time / (devices * peak FLOP/s per device).
"""

import functools
import time

import jax
import jax.numpy as jnp

from glm_jax.training import chips


def layer_matmul_params(config) -> int:
    """Matmul parameters of the Transformer layers (QKV, attention output, MLP in and out)."""
    return config.num_layers * (4 + 2 * config.mlp_ratio) * config.hidden**2


def matmul_params(config) -> int:
    """All matmul parameters: the layers' and the tied output projection's (vocab * hidden)."""
    return layer_matmul_params(config) + config.vocab_size * config.hidden


def train_flops(config, tokens: int, visible_pairs, logit_tokens: int | None = None) -> float:
    """Model FLOPs of one train step over `tokens` tokens with `visible_pairs` attended (q, k) pairs,
    and logits at `logit_tokens` positions (default: all `tokens`)."""
    logit_tokens = tokens if logit_tokens is None else logit_tokens
    matmuls = layer_matmul_params(config) * tokens + config.vocab_size * config.hidden * logit_tokens
    return 6.0 * matmuls + 12.0 * config.num_layers * config.hidden * visible_pairs


@functools.cache
def measured_matmul_peak(size: int = 2048, trials: int = 7) -> float:
    """FLOP/s of a float32 [size, size] matmul on this device (the CPU's practical peak): the best
    of `trials` timed runs after a warm-up, measured once per process.

    The best, not the mean: other work on the machine (the data pipeline starting, other
    processes) only ever slows a run down, and a peak measured low would inflate MFU, past 100%.
    """
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops_per_device(configured: float = 0.0) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from): config, the known chip table, or a CPU measurement."""
    if configured:
        return configured, "train.peak_flops"
    kind = jax.devices()[0].device_kind
    known = chips.chip(kind)
    if known is not None:
        return known.peak_flops, f"{kind} spec"
    return measured_matmul_peak(), f"{kind} measured matmul, best of 7"
