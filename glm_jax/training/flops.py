"""Model FLOPs of a train step and the peak they are measured against (MFU).

Per train step, counting a multiply-add as 2 FLOPs and the backward pass as twice the forward:

    flops = 6 * N * T  +  12 * layers * hidden * (visible q-k pairs)

N = matmul parameters (12 * hidden^2 per layer, plus vocab * hidden for the tied output
projection; embedding lookups and biases are not matmuls), T = tokens in the batch, and the
attention term counts QK^T and PV (2 * hidden FLOPs per visible query-key pair each, forward) at
the real density of the GLM mask (Part A bidirectional, Part B causal, padding nothing).
MFU = flops / step time / (devices * peak FLOP/s per device).
"""

import time

import jax
import jax.numpy as jnp

# Dense bf16 peak FLOP/s per chip (per device) from the vendors' specifications.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5": 459e12,  # v5p
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,  # v6e (Trillium)
    "TPU v6e": 918e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
}


def matmul_params(config) -> int:
    return config.num_layers * (4 + 2 * config.mlp_ratio) * config.hidden**2 + config.vocab_size * config.hidden


def train_flops(config, tokens: int, visible_pairs) -> float:
    """Model FLOPs of one train step over `tokens` tokens with `visible_pairs` attended (q, k) pairs."""
    return 6.0 * matmul_params(config) * tokens + 12.0 * config.num_layers * config.hidden * visible_pairs


def measured_matmul_peak(size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a float32 [size, size] matmul on this device (the CPU's practical peak)."""
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a)
    out.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def peak_flops_per_device(configured: float = 0.0) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from): config, the known chip table, or a CPU measurement."""
    if configured:
        return configured, "train.peak_flops"
    kind = jax.devices()[0].device_kind
    for name in sorted(PEAK_FLOPS, key=len, reverse=True):  # 'TPU v5 lite' before 'TPU v5'
        if kind.startswith(name):
            return PEAK_FLOPS[name], f"{kind} spec"
    return measured_matmul_peak(), f"{kind} measured matmul"
