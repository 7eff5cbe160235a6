"""LoRA adapters (Hu et al. 2021, arXiv:2106.09685) on a layer's projections, and their merge.

An adapted projection computes `y = x W + b + (alpha / rank) * dropout(x) A B` with `A [*in, rank]`
and `B [rank, *out]`, held beside the kernel as `<projection>/lora/a` and `.../b`. A starts as in
the reference implementation (microsoft/LoRA's loralib, Hugging Face PEFT): Kaiming-uniform with
a = √5, that is U(-1/√fan_in, 1/√fan_in) over the projection's input width; B starts at zero, so a
fresh adapter leaves the model's outputs exactly as they were. A's input axes and B's output axes
carry the kernel's logical axis names, so the adapters shard as their kernels do; the rank axis
(`lora_rank`) is never split.

`merge` folds every adapter into its kernel, `W + (alpha / rank) A B`: the model without adapters
then computes the same outputs (for export and generation).
"""

import dataclasses
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

# Where adapters can go, by the names the layer gives these projections' outputs (`checkpoint_name`).
TARGETS = ("qkv", "attention_out", "mlp_in", "mlp_out")
ADAPTER = "lora"  # the adapter's module name inside its projection
RANK_AXIS = "lora_rank"  # logical name of the rank axis (unsharded, `sharding.RULES`)


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int = 0  # 0: no adapters
    alpha: float = 16.0  # the adapter's output is scaled by alpha / rank
    dropout: float = 0.0  # on the adapter's input, in training
    targets: tuple[str, ...] = TARGETS

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def at(self, target: str) -> "LoRAConfig":
        """This config where `target` (one of TARGETS) is adapted, else no adapter (rank 0)."""
        return self if self.rank and target in self.targets else OFF


OFF = LoRAConfig()


class Adapter(nn.Module):
    """`(alpha / rank) * dropout(x) A B` over the last `len(in_shape)` axes of x; `names`: the kernel's axis names."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    names: tuple[str | None, ...]
    config: LoRAConfig
    dtype: str

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c, inputs = self.config, len(self.in_shape)
        kaiming = nn.initializers.variance_scaling(
            1 / 3, "fan_in", "uniform", in_axis=tuple(range(inputs)), out_axis=-1
        )
        a_names, b_names = (*self.names[:inputs], RANK_AXIS), (RANK_AXIS, *self.names[inputs:])
        a = self.param("a", nn.with_logical_partitioning(kaiming, a_names), (*self.in_shape, c.rank))
        b = self.param("b", nn.with_logical_partitioning(nn.initializers.zeros, b_names), (c.rank, *self.out_shape))
        x = nn.Dropout(c.dropout, deterministic=deterministic)(x)
        low = jnp.tensordot(x.astype(self.dtype), a.astype(self.dtype), axes=inputs) * c.scale
        return jnp.tensordot(low, b.astype(self.dtype), axes=1)


def merge(params, scale: float):
    """`params` with every adapter folded into its kernel (`W + scale * A B`, in float32 at full precision)
    and removed: the parameters of the same model without adapters. Scanned layers (a leading stacked axis
    on every array) are merged layer by layer."""
    if not isinstance(params, Mapping):
        return params
    merged = {key: merge(value, scale) for key, value in params.items() if key != ADAPTER}
    if ADAPTER in params:
        kernel, a, b = params["kernel"], params[ADAPTER]["a"], params[ADAPTER]["b"]

        def product(a, b):
            return jnp.tensordot(a, b, axes=1, precision=jax.lax.Precision.HIGHEST)

        stacked = a.ndim + b.ndim - 2 > kernel.ndim
        merged["kernel"] = kernel + scale * (jax.vmap(product) if stacked else product)(a, b).astype(kernel.dtype)
    return merged
