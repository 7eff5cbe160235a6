"""GLM attention on the TPU splash kernel, computing the layout's mask exactly from its O(L) form.

Query q may attend key k iff `segment_ids[k] == segment_ids[q]` and `k <= last_visible[q]`
(`glm_jax.model.layout`). The splash kernel (`jax.experimental.pallas.ops.tpu.splash_attention`)
ANDs its segment-id mask with a "mask function" `f(q_sequence[q], k)`, where `q_sequence` is an
array the forward, dq and dkv kernels read at run time from the kernel's `MaskInfo`. With
`f(s, k) = k <= s` (the causal function) and `q_sequence = last_visible` of the example, the two
give GLM's mask: causal for Part B, Part A's whole bidirectional block for Part A, nothing across
packed examples. The gradient is the kernel's own custom VJP (dq and dkv kernels).

Private splash API used here, and only here (the public `make_splash_mha` derives a static,
trace-time `MaskInfo` from a numpy-evaluable mask; GLM's mask depends on each batch, so this
module builds the `MaskInfo` itself):

- `splash_attention_mask_info.MaskInfo` (module not exported by the package): constructed with
  `data_next = block_mask = mask_next = partial_mask_blocks = None` and `q_sequence` set to the
  (traced) `last_visible` of one example. Without block information the kernels run every
  (q block, kv block) pair and apply the mask function on each one (`_next_nonzero`'s "no
  masking nor next data information" case). A static causal block structure would instead skip
  the blocks above the diagonal, which Part A queries need (`last_visible[q] > q`).
- `splash_attention_kernel.SplashAttentionKernel(fwd_info, dq_info, dkv_info, **kwargs)` (not
  exported by the package), whose keyword arguments are those of the private
  `_splash_attention`: block_sizes, is_mqa, save_residuals, mask_value, attn_logits_soft_cap,
  residual_checkpoint_name, mask_function, interpret.

`private_api_problems()` checks these assumptions against the installed JAX (the test suite asserts
it is empty, and the first call of `splash_attention` raises if it is not). Public API used:
`BlockSizes`, `SegmentIds`.

Not done: skipping blocks that no query of a block can see (e.g. between packed examples). It
would need per-example `data_next`/`block_mask` computed at run time; its gain can only be
measured on a TPU. Every block is computed, as for full attention.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as _kernel
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask_info as _mask_info

from glm_jax.model.kernel_sharding import over_batch_and_heads, require_private_api

LANES = 128  # block sizes must be multiples of the TPU lane width
DEFAULT_BLOCKS = (512, 256, 128)  # the default block is the first of these that divides L

# What this module assumes of the private splash API (checked by `private_api_problems`).
_MASK_INFO_FIELDS = ("data_next", "mask_next", "block_mask", "partial_mask_blocks", "q_sequence", "is_dynamic_mask")
_KERNEL_KWARGS = (
    "is_mqa",
    "block_sizes",
    "save_residuals",
    "mask_value",
    "attn_logits_soft_cap",
    "residual_checkpoint_name",
    "mask_function",
    "interpret",
)


def _visible(last_visible, key_index):
    """The kernel's mask function: key k is visible to a query whose q_sequence entry is `last_visible`.

    Module level, so that the kernel's jit (where it is a static argument) caches across calls.
    """
    return key_index <= last_visible


def private_api_problems() -> list[str]:
    """What differs, in the installed JAX, from the private splash API this module relies on ([] if nothing)."""
    problems = []
    info = getattr(_mask_info, "MaskInfo", None)
    fields = getattr(info, "_fields", None)
    if fields != _MASK_INFO_FIELDS:
        problems.append(f"splash_attention_mask_info.MaskInfo fields are {fields}, expected {_MASK_INFO_FIELDS}")

    kernel_class = getattr(_kernel, "SplashAttentionKernel", None)
    if kernel_class is None:
        problems.append("splash_attention_kernel.SplashAttentionKernel is gone")
    else:
        params = list(inspect.signature(kernel_class.__init__).parameters.values())
        names = [p.name for p in params]
        expected = ["self", "fwd_mask_info", "dq_mask_info", "dkv_mask_info", "kwargs"]
        if names != expected or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
            problems.append(f"SplashAttentionKernel.__init__ takes {names}, expected {expected} (last one **kwargs)")

    attention = getattr(_kernel, "_splash_attention", None)
    if attention is None:
        problems.append("splash_attention_kernel._splash_attention (which SplashAttentionKernel calls) is gone")
    else:
        params = inspect.signature(attention).parameters.values()
        keyword_only = sorted(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        if keyword_only != sorted(_KERNEL_KWARGS):
            problems.append(
                f"_splash_attention's keyword-only arguments are {keyword_only}, expected {sorted(_KERNEL_KWARGS)}"
            )

    # Without block information, every block runs and is masked (q block i, kv block j -> fetch j; dkv: i).
    next_nonzero = getattr(_kernel, "_next_nonzero", None)
    if next_nonzero is None:
        problems.append("splash_attention_kernel._next_nonzero is gone (block skipping without MaskInfo arrays)")
    else:
        try:
            forward = next_nonzero(0, 1, 2, None, None, None)
            backward = next_nonzero(0, 1, 2, None, None, None, next_i=True)
        except Exception as e:  # any failure is a change worth naming
            forward = backward = f"an error: {e!r}"
        if forward != (2, None, True, False) or backward != (1, None, True, False):
            problems.append(
                f"_next_nonzero without block arrays gives {forward} / {backward} (next_i), expected "
                "(2, None, True, False) / (1, None, True, False): every block run and masked"
            )
    for name in ("BlockSizes", "SegmentIds", "DEFAULT_MASK_VALUE"):
        if not hasattr(_kernel, name):
            problems.append(f"splash_attention_kernel.{name} is gone")
    return problems


@functools.cache
def _check_private_api() -> None:
    require_private_api("splash", "JAX's splash attention", private_api_problems())


def _block(length: int, block: int | None, name: str) -> int:
    if length % LANES:
        raise ValueError(
            f"splash attention needs the sequence length to be a multiple of {LANES}, got L={length}: "
            f"set data.seq_len to a multiple of {LANES}, or use model.attention='xla'."
        )
    if block is None:
        return next(b for b in DEFAULT_BLOCKS if length % b == 0)
    if block % LANES or length % block:
        raise ValueError(
            f"splash attention {name}={block} must be a multiple of {LANES} that divides the sequence length "
            f"L={length}: pick another {name} (or leave it None for the largest of {DEFAULT_BLOCKS} dividing L)."
        )
    return block


def _one_example(q, k, v, segment_ids, last_visible, *, block_sizes, interpret, residual_checkpoint_name):
    """One example: q, k, v `[heads, L, head_dim]` (q already scaled), segment_ids, last_visible `[L]`."""
    info = _mask_info.MaskInfo(
        data_next=None, mask_next=None, block_mask=None, partial_mask_blocks=None, q_sequence=last_visible
    )
    kernel = _kernel.SplashAttentionKernel(
        info,
        info,
        info,
        block_sizes=block_sizes,
        is_mqa=False,
        save_residuals=False,
        mask_value=_kernel.DEFAULT_MASK_VALUE,
        attn_logits_soft_cap=None,
        residual_checkpoint_name=residual_checkpoint_name,
        mask_function=_visible,
        interpret=interpret,
    )
    return kernel(q, k, v, _kernel.SegmentIds(q=segment_ids, kv=segment_ids))


def _splash_local(q, k, v, segment_ids, last_visible, *, block_q, block_kv, interpret, residual_checkpoint_name):
    length = q.shape[1]
    bq, bkv = _block(length, block_q, "block_q"), _block(length, block_kv, "block_kv")
    block_sizes = _kernel.BlockSizes(
        block_q=bq,
        block_kv=bkv,
        block_kv_compute=bkv,
        block_q_dkv=bq,
        block_kv_dkv=bkv,
        block_kv_dkv_compute=bkv,
        block_q_dq=bq,
        block_kv_dq=bkv,
    )
    segment_ids = segment_ids.astype(jnp.int32)
    # A padding query (segment 0) sees every padding key: its row is never empty (no NaN, and no
    # uniform average over real keys whose gradient could leak into real positions).
    last_visible = jnp.where(segment_ids > 0, last_visible.astype(jnp.int32), length - 1)
    scaled = (q.astype(jnp.float32) * q.shape[-1] ** -0.5).astype(q.dtype)
    heads_first = lambda x: jnp.swapaxes(x, 1, 2)  # noqa: E731 - [B, L, H, D] <-> [B, H, L, D]
    attend = functools.partial(
        _one_example, block_sizes=block_sizes, interpret=interpret, residual_checkpoint_name=residual_checkpoint_name
    )
    out = jax.vmap(attend)(heads_first(scaled), heads_first(k), heads_first(v), segment_ids, last_visible)
    return heads_first(out).astype(q.dtype)


def splash_attention(
    q,
    k,
    v,
    segment_ids,
    last_visible,
    *,
    interpret: bool = False,
    block_q: int | None = None,
    block_kv: int | None = None,
    mesh=None,
    residual_checkpoint_name: str | None = None,
):
    """GLM's masked attention on the splash kernel; same contract as `dot_product_attention` on real rows.

    Args:
      q, k, v: `[B, L, heads, head_dim]`.
      segment_ids: `[B, L]` int, 0 for padding (the layout's).
      last_visible: `[B, L]` int, the last key index each query may attend to (the layout's).
      interpret: run the kernel in Pallas interpret mode (CPU tests; slow).
      block_q, block_kv: kernel tiles (forward and backward), multiples of 128 dividing L; None picks
        the largest of 512, 256, 128 that divides L. L must be a multiple of 128.
      mesh: a `Mesh` or `AbstractMesh` (e.g. `jax.sharding.get_abstract_mesh()` under `jax.set_mesh`):
        the kernel then runs under `shard_map`, batch over the mesh's ("data", "fsdp") axes and heads
        over "tensor" (those present); B and heads must divide by those axes' sizes.
      residual_checkpoint_name: a name for the kernel's saved forward residuals (output and
        logsumexp), for a remat policy that saves names.
    Returns `[B, L, heads, head_dim]` in q's dtype; padding queries attend over padding keys only (their
    outputs are not the reference's uniform average, but finite and independent of real positions).
    """
    _check_private_api()
    local = functools.partial(
        _splash_local,
        block_q=block_q,
        block_kv=block_kv,
        interpret=interpret,
        residual_checkpoint_name=residual_checkpoint_name,
    )
    if mesh is None:
        return local(q, k, v, segment_ids, last_visible)
    return over_batch_and_heads(local, mesh)(q, k, v, segment_ids, last_visible)
