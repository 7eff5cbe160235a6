"""GLM attention on NVIDIA GPU flash kernels from tokamax, given the mask as one key range per query.

Query q may attend key k iff `k_start[q] <= k < k_end[q]` (`layout.key_ranges`: from the first
index of q's example to `last_visible[q]`; a padding query over its run of padding). tokamax's
attention mask holds exactly this, per-query `k_start` (inclusive) and `k_end` (exclusive), and
each of its implementations reads it its own way:

- "mosaic": tokamax's Pallas Mosaic GPU flash attention (Hopper sm90 and Blackwell sm100 kernels).
  The forward, dq and dkv kernels read `k_start`/`k_end` and mask each tile with them; the forward
  kernel also skips the key blocks outside a query tile's ranges. No `[L, L]` array exists.
  Needs L a multiple of 128 (the sm90 forward reduces the ranges per tile of 2 x 64 queries).
- "cudnn": cuDNN flash attention through `jax.nn.dot_product_attention`, with the dense
  `[B, 1, L, L]` mask that tokamax builds from the same ranges (cuDNN takes no ranges).
  bf16/fp16 only, even L.

With `reference=True` each runs the library's XLA version of the same call instead, on any
device: tokamax's own XLA attention with the same range mask for "mosaic", and
`jax.nn.dot_product_attention(implementation="xla")` with the same dense mask for "cudnn". The
CPU tests check the translation through these against `attention.dot_product_attention`. There is
no attention dropout on this path (the kernels have none).

Private tokamax API used here, and only here (its public `tokamax.dot_product_attention` takes a
dense mask or sequence lengths, no per-query ranges):

- `tokamax._src.ops.attention.base.Mask`, with keyword fields `k_start` and `k_end`, `[*B, #heads, T]`.
- The op classes `base.DotProductAttention` (XLA), `pallas_mosaic_gpu.PallasMosaicGpuFlashAttention`
  and `jax_nn.JaxNnDotProductAttention(implementation=...)`, called as `op(q, k, v, mask=,
  logits_scale=)`.
- `pallas_mosaic_gpu_common.decompose_mask`, which hands the Mosaic kernels the ranges as they
  are (not folded into a dense mask).

`private_api_problems()` checks these against the installed tokamax (the test suite asserts it is
empty; the first call of `gpu_flash_attention` raises if it is not).

tokamax reads its options (`tokamax.config`) from absl flags and parses `sys.argv` for them if
nothing has parsed the flags yet, which fails on any other command line (pytest's, a script's
argparse flags). Where no absl app has parsed them, they are marked parsed first: tokamax then
uses its defaults (configs from its autotuning cache, else heuristics).
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from tokamax._src.ops.attention import base as _base
from tokamax._src.ops.attention import jax_nn as _jax_nn
from tokamax._src.ops.attention import pallas_mosaic_gpu as _mosaic
from tokamax._src.ops.attention import pallas_mosaic_gpu_common as _mosaic_common

from glm_jax.model.glm import GPU_KERNELS
from glm_jax.model.kernel_sharding import over_batch_and_heads, require_private_api

MOSAIC_SEQ_MULTIPLE = 128  # L must be a multiple of this for the Mosaic kernels
_OP_KEYWORDS = ("mask", "logits_scale")


def _op(kernel: str, reference: bool):
    """The tokamax op that runs `kernel`, or its XLA reference."""
    if kernel == "mosaic":
        return _base.DotProductAttention() if reference else _mosaic.PallasMosaicGpuFlashAttention()
    if kernel == "cudnn":
        return _jax_nn.JaxNnDotProductAttention(implementation="xla" if reference else "cudnn")
    raise ValueError(f"gpu_flash kernel {kernel!r} is not one of {GPU_KERNELS}.")


def _range_mask(k_start, k_end):
    """tokamax's mask of per-query key ranges `[B, L]`, the same for every head."""
    return _base.Mask(k_start=k_start[:, None, :], k_end=k_end[:, None, :])


def _mask_problems() -> list[str]:
    """Does a range mask mean k_start <= k < k_end, and reach the Mosaic kernels as ranges?"""
    expected = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]], bool)
    try:
        with jax.ensure_compile_time_eval():  # concrete values, also when first called while tracing
            k_start, k_end, q = jnp.array([[0, 0, 2, 2]]), jnp.array([[2, 1, 4, 3]]), jnp.zeros((1, 4, 1, 8))
            mask = _range_mask(k_start, k_end)
            dense = np.asarray(mask.as_array(4, 4))
            dense_part, causal, starts, ends = _mosaic_common.decompose_mask(mask, q, q, None, None)
            as_given = np.array_equal(starts, k_start[:, None]) and np.array_equal(ends, k_end[:, None])
    except Exception as e:  # any failure is a change worth naming
        return [f"base.Mask(k_start=, k_end=) or pallas_mosaic_gpu_common.decompose_mask failed: {e!r}"]
    problems = []
    if dense.shape != (1, 1, 4, 4) or not np.array_equal(dense[0, 0], expected):
        problems.append(f"base.Mask(k_start=, k_end=).as_array gives {dense.tolist()}, expected {expected.tolist()}")
    if dense_part is not None or causal or not as_given:
        problems.append(
            "pallas_mosaic_gpu_common.decompose_mask no longer hands a range mask to the Mosaic kernels as "
            f"(no dense mask, not causal, k_start, k_end): got ({dense_part}, {causal}, {starts}, {ends})"
        )
    return problems


def private_api_problems() -> list[str]:
    """What differs, in the installed tokamax, from the private API this module relies on ([] if nothing)."""
    problems = _mask_problems()
    ops = {
        "base.DotProductAttention": getattr(_base, "DotProductAttention", None),
        "pallas_mosaic_gpu.PallasMosaicGpuFlashAttention": getattr(_mosaic, "PallasMosaicGpuFlashAttention", None),
        "jax_nn.JaxNnDotProductAttention": getattr(_jax_nn, "JaxNnDotProductAttention", None),
    }
    for name, op_class in ops.items():
        if op_class is None:
            problems.append(f"{name} is gone")
            continue
        params = inspect.signature(op_class.__call__).parameters
        missing = [k for k in _OP_KEYWORDS if k not in params or params[k].kind is not inspect.Parameter.KEYWORD_ONLY]
        if missing:
            problems.append(f"{name}.__call__ takes no keyword-only {missing}")
    jax_nn_op = ops["jax_nn.JaxNnDotProductAttention"]
    if jax_nn_op is not None and "implementation" not in getattr(jax_nn_op, "__dataclass_fields__", {}):
        problems.append("jax_nn.JaxNnDotProductAttention has no `implementation` field (xla / cudnn)")
    return problems


@functools.cache
def _check_private_api() -> None:
    require_private_api("gpu_flash", "tokamax attention", private_api_problems())


def _ensure_flags_parsed() -> None:
    """Lets tokamax read its absl options without parsing `sys.argv` (see the module docstring)."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _local(q, k, v, k_start, k_end, *, kernel, reference):
    length = q.shape[1]
    if kernel == "mosaic" and length % MOSAIC_SEQ_MULTIPLE:
        raise ValueError(
            f"gpu_flash's Mosaic kernel needs the sequence length to be a multiple of {MOSAIC_SEQ_MULTIPLE}, "
            f"got L={length}: set data.seq_len to one, or use kernel='cudnn' (what config.gpu_flash_kernel picks then)."
        )
    op = _op(kernel, reference)
    return op(q, k, v, mask=_range_mask(k_start, k_end), logits_scale=q.shape[-1] ** -0.5)


def gpu_flash_attention(q, k, v, k_start, k_end, *, kernel: str = "mosaic", reference: bool = False, mesh=None):
    """GLM's masked attention on a GPU flash kernel; same contract as `dot_product_attention` on real rows.

    Args:
      q, k, v: `[B, L, heads, head_dim]`.
      k_start, k_end: `[B, L]` int32, the key range of each query (`layout.key_ranges`).
      kernel: "mosaic" (tokamax's Mosaic GPU kernels, Hopper and Blackwell; L a multiple of 128) or
        "cudnn" (cuDNN through jax.nn, with the dense mask; bf16/fp16, even L).
      reference: run the library's XLA version of the same call (any device; for tests).
      mesh: a `Mesh` or `AbstractMesh`: the kernel then runs under `shard_map`, rows over the mesh's
        ("data", "fsdp") axes and heads over "tensor" (`kernel_sharding.over_batch_and_heads`).
    Returns `[B, L, heads, head_dim]` in q's dtype; padding queries attend over their padding keys
    only (finite, independent of real positions).
    """
    _check_private_api()
    _ensure_flags_parsed()
    local = functools.partial(_local, kernel=kernel, reference=reference)
    if mesh is None:
        return local(q, k, v, k_start, k_end)
    return over_batch_and_heads(local, mesh)(q, k, v, k_start, k_end)
