"""The GLM Transformer (paper §2.2, official code) as a pure Flax module.

`GLM(config).apply({'params': params}, batch)` maps a batch of contract fields to float32 logits
`[B, L, vocab]` (or `[B, C, vocab]` at `scored_positions` only). Pre-LayerNorm blocks
`h = x + Attn(LN(x)); y = h + MLP(LN(h))`, fused QKV with bias, 4h tanh-GeLU MLP, word +
position + block-position embeddings, final LayerNorm, output tied to the word embeddings. Every
parameter carries logical axis names (see `glm_jax.training.sharding`).
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from glm_jax.model.attention import dot_product_attention
from glm_jax.model.layout import BLOCK_POSITIONS, Scheme, dense_mask, key_ranges, layout
from glm_jax.model.lora import OFF, Adapter, LoRAConfig
from glm_jax.model.prompt import PROMPT_FUNCS, PromptConfig, prompt_embeddings


@dataclasses.dataclass(frozen=True)
class GLMConfig:
    vocab_size: int  # embedding rows (may exceed the tokenizer's size, e.g. padded to 128)
    num_layers: int
    hidden: int
    heads: int
    max_len: int  # largest position; both position tables hold max_len + 1 rows
    blank_markers: tuple[int, ...]  # [MASK], [sMASK], [gMASK] ids, for the layout
    mlp_ratio: int = 4
    dropout: float = 0.0  # embeddings and residual branches
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    dtype: str = "float32"  # compute dtype; parameters stay float32
    scan_layers: bool = False  # one scanned layer with stacked parameters (fast compiles for deep models)
    remat: str = "none"  # rematerialization policy, see REMAT_POLICIES
    attention: str = "xla"  # one of ATTENTION_PATHS
    splash_interpret: bool = False  # run the splash kernel in Pallas interpret mode (CPU tests)
    gpu_kernel: str = "mosaic"  # gpu_flash's kernel, one of GPU_KERNELS
    gpu_reference: bool = False  # gpu_flash runs the kernel library's XLA version of its call (CPU tests)
    # Positions and mask (`layout.Scheme`): GLM's by default, or a variant of the paper's comparisons.
    block_positions: str = "span"  # one of layout.BLOCK_POSITIONS; "none" has no block-position table
    sentinel_positions: bool = False  # every Part B token at position max_len (official --sentinel-token)
    causal: bool = False  # left to right over the whole row (GPT)
    random_positions: bool = False  # training examples start at random positions (official --random-position)
    lora: LoRAConfig = OFF  # LoRA adapters on the layers' projections (`glm_jax.model.lora`); rank 0: none
    prompt: PromptConfig = PromptConfig()  # continuous prompts, ids vocab_size + k (`glm_jax.model.prompt`)

    @property
    def scheme(self) -> Scheme:
        sentinel = self.max_len if self.sentinel_positions else -1
        return Scheme(self.block_positions, sentinel, self.causal, self.max_len)

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"model.hidden={self.hidden} is not divisible by model.heads={self.heads}.")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"model.remat={self.remat!r} is not one of {sorted(REMAT_POLICIES)}.")
        if self.attention not in ATTENTION_PATHS:
            raise ValueError(f"GLMConfig.attention={self.attention!r} is not one of {ATTENTION_PATHS}.")
        if self.block_positions not in BLOCK_POSITIONS:
            raise ValueError(f"model.block_positions={self.block_positions!r} is not one of {BLOCK_POSITIONS}.")
        if self.prompt.func not in PROMPT_FUNCS:
            raise ValueError(f"prompt.func={self.prompt.func!r} is not one of {PROMPT_FUNCS}.")
        if self.gpu_kernel not in GPU_KERNELS:
            raise ValueError(f"GLMConfig.gpu_kernel={self.gpu_kernel!r} is not one of {GPU_KERNELS}.")
        if self.attention != "xla" and self.attention_dropout > 0.0:
            raise ValueError(
                f"model.attention={self.attention!r} has no dropout on attention probabilities, but "
                f"model.attention_dropout={self.attention_dropout}: set it to 0 or use model.attention='xla'."
            )


# xla: einsum + softmax over a dense [B, 1, L, L] mask (the reference, and decoding); splash: the TPU
# splash kernel on (segment_ids, last_visible); gpu_flash: GPU flash kernels on per-query key ranges.
ATTENTION_PATHS = ("xla", "splash", "gpu_flash")
GPU_KERNELS = ("mosaic", "cudnn")  # gpu_flash: tokamax's Mosaic GPU kernels, or cuDNN (glm_jax/model/gpu_flash.py)


# What a layer keeps for the backward pass; the rest is recomputed. Names are set by checkpoint_name.
REMAT_POLICIES = {
    "none": None,  # no rematerialization: everything is kept
    "save_dots": jax.checkpoint_policies.save_only_these_names("qkv", "attention_out", "mlp_in", "mlp_out"),
    "full": jax.checkpoint_policies.nothing_saveable,
}


RESIDUAL = ("activation_batch", "activation_length", "activation_embed")  # logical axes of the residual stream


def _param(init, names):
    return nn.with_logical_partitioning(init, names)


def _constrain(x, *names):
    """Pins an activation's layout by logical names (active under `nn.logical_axis_rules` and a mesh)."""
    return nn.with_logical_constraint(x, names)


class Projection(nn.Module):
    """`x @ kernel + bias` over the last `len(in_shape)` axes of x; kernel `[*in_shape, *out_shape]`.

    Like `nn.DenseGeneral`, but the kernel is created in its final shape, so its logical axis
    names (`names`, one per kernel axis) hold at initialization and under sharding rules alike.
    With `lora.rank` > 0, a LoRA adapter's term is added (`lora.Adapter`, its dropout off if `deterministic`).
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    names: tuple[str | None, ...]
    stddev: float
    dtype: str
    lora: LoRAConfig = OFF

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        kernel = self.param(
            "kernel", _param(nn.initializers.normal(self.stddev), self.names), (*self.in_shape, *self.out_shape)
        )
        out_names = self.names[len(self.in_shape) :]
        bias = self.param("bias", _param(nn.initializers.zeros, out_names), self.out_shape)
        y = jnp.tensordot(x.astype(self.dtype), kernel.astype(self.dtype), axes=len(self.in_shape))
        y = y + bias.astype(self.dtype)
        if self.lora.rank:
            adapter = Adapter(self.in_shape, self.out_shape, self.names, self.lora, self.dtype, name="lora")
            y = y + adapter(x, deterministic)  # after the bias: a fresh adapter (B = 0) changes no bit
        return y


class Attention(nn.Module):
    """Self-attention over the layer's input; with a cache (decoding), over the cache's keys too.

    `mask` is the dense `[B, 1, T, S]` bool mask (xla path, decoding), on the splash path the
    layout's `(segment_ids, last_visible)` and on the gpu_flash path its `key_ranges`, each
    `[B, L]`. `cache`, if given, is this layer's `(keys, values)` `[B, S, heads, head_dim]`: the new
    keys and values are written at `index` and the queries attend over all S slots. Returns the
    output and the updated cache (None without one).
    """

    config: GLMConfig

    @nn.compact
    def __call__(self, x, mask, deterministic, cache=None, index=None):
        c = self.config
        head_dim = c.hidden // c.heads
        qkv = Projection(
            (c.hidden,), (3, c.heads, head_dim), ("embed", None, "heads", "kv"), 0.02, c.dtype, c.lora.at("qkv"),
            name="query_key_value",
        )(x, deterministic)  # fmt: skip
        qkv = _constrain(qkv, "activation_batch", "activation_length", None, "activation_heads", None)
        qkv = checkpoint_name(qkv, "qkv")
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cache is not None:
            write = lambda old, new: jax.lax.dynamic_update_slice_in_dim(old, new.astype(old.dtype), index, axis=1)  # noqa: E731
            k, v = cache = (write(cache[0], k), write(cache[1], v))
        if isinstance(mask, tuple):
            out = _fused_attention(c, q, k, v, mask)
        else:
            rng = None if deterministic or c.attention_dropout == 0.0 else self.make_rng("dropout")
            out = dot_product_attention(q, k, v, mask, dropout_rate=c.attention_dropout, dropout_rng=rng)
        out = checkpoint_name(out, "attention_out")
        dense = Projection(
            (c.heads, head_dim), (c.hidden,), ("heads", "kv", "embed"), _output_std(c), c.dtype,
            c.lora.at("attention_out"), name="dense",
        )  # fmt: skip
        return dense(out, deterministic), cache


class MLP(nn.Module):
    config: GLMConfig

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        c = self.config
        width = c.mlp_ratio * c.hidden
        h = Projection(
            (c.hidden,), (width,), ("embed", "mlp"), 0.02, c.dtype, c.lora.at("mlp_in"), name="dense_h_to_4h"
        )(x, deterministic)
        h = _constrain(h, "activation_batch", "activation_length", "activation_mlp")
        h = nn.gelu(checkpoint_name(h, "mlp_in"), approximate=True)
        out = Projection(
            (width,), (c.hidden,), ("mlp", "embed"), _output_std(c), c.dtype, c.lora.at("mlp_out"), name="dense_4h_to_h"
        )(h, deterministic)
        return checkpoint_name(out, "mlp_out")


def _fused_attention(c: GLMConfig, q, k, v, mask):
    """The splash or gpu_flash kernel over the mask's O(L) form, sharded over the trainer's mesh."""
    if c.attention == "splash":
        from glm_jax.model import splash  # Pallas loads only for the splash path

        return splash.splash_attention(
            q, k, v, *mask, interpret=c.splash_interpret, mesh=_context_mesh(), residual_checkpoint_name="attention_out"
        )
    from glm_jax.model import gpu_flash  # tokamax loads only for the GPU path

    return gpu_flash.gpu_flash_attention(
        q, k, v, *mask, kernel=c.gpu_kernel, reference=c.gpu_reference, mesh=_context_mesh()
    )


def _context_mesh():
    """The mesh set by `jax.set_mesh` around tracing (the trainer's), or None outside one."""
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh.empty else mesh


def _output_std(c: GLMConfig) -> float:
    """Output projections start smaller, N(0, 0.02 / sqrt(2 * layers)), as in the official code."""
    return 0.02 / math.sqrt(2 * c.num_layers)


def _layer_norm(c: GLMConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=c.layer_norm_eps,
        dtype=c.dtype,
        scale_init=_param(nn.initializers.ones, ("embed",)),
        bias_init=_param(nn.initializers.zeros, ("embed",)),
        name=name,
    )


class Block(nn.Module):
    """One pre-LN layer; `(x, mask[, cache, index]) → (x, cache)`, the carry form `nn.scan` needs."""

    config: GLMConfig
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, mask, cache=None, index=None):
        c = self.config
        drop = nn.Dropout(c.dropout, deterministic=self.deterministic)
        attention = Attention(c, name="attention")
        h, cache = attention(_layer_norm(c, "input_layernorm")(x), mask, self.deterministic, cache, index)
        x = x + drop(h)
        mlp = MLP(c, name="mlp")(_layer_norm(c, "post_attention_layernorm")(x), self.deterministic)
        return x + drop(mlp), cache


def _run_layers(c: GLMConfig, deterministic: bool, x, mask, cache=None, index=None):
    """The layer stack, unrolled (`layers_0`, `layers_1`, ...) or scanned (`layers`, stacked on axis 0).

    `cache`: `(keys, values)`, each `[layers, B, S, heads, head_dim]`, or None. Returns the
    output and the updated cache.
    """
    block = (
        Block if c.remat == "none" else nn.remat(Block, policy=REMAT_POLICIES[c.remat], prevent_cse=not c.scan_layers)
    )
    if c.scan_layers:
        decoding = cache is not None
        scanned = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=(nn.broadcast, 0, nn.broadcast) if decoding else (nn.broadcast,),
            length=c.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        layers = scanned(c, deterministic, name="layers")
        x = _constrain(x, *RESIDUAL)
        return layers(x, mask, cache, index) if decoding else layers(x, mask)
    updated = []
    for i in range(c.num_layers):
        layer_cache = None if cache is None else (cache[0][i], cache[1][i])
        x, layer_cache = block(c, deterministic, name=f"layers_{i}")(_constrain(x, *RESIDUAL), mask, layer_cache, index)
        updated.append(layer_cache)
    return x, None if cache is None else tuple(jnp.stack(parts) for parts in zip(*updated, strict=True))


class GLM(nn.Module):
    """`GLM(config).apply({'params': p}, batch)` → logits of a batch of contract fields.

    With `cache` (decoding, see `glm_jax.downstream.decoding`), `batch` instead holds the tokens to add to the
    cache and where they sit: `inputs`, `positions`, `block_positions` `[B, T]`, `mask`
    `[B, 1, T, S]` over the cache slots and `index`, the slot of the first token; the call returns
    `(logits, updated cache)`.

    With `scored_positions` (`[B, C]` int32, training and evaluation), the final LayerNorm and the
    output projection run only at those positions of each row and the logits are `[B, C, V]`: the
    `[B, L, V]` logits are never built. With `return_hidden`, the call stops before the output
    projection and returns the final LayerNorm's output (for logits computed in chunks, see
    `output_logits`).
    """

    config: GLMConfig

    @nn.compact
    def __call__(self, batch, deterministic: bool = True, cache=None, scored_positions=None, return_hidden=False):
        c = self.config
        if cache is None:
            noise = None
            if c.random_positions and not deterministic:
                noise = jax.random.uniform(self.make_rng("dropout"), batch["inputs"].shape)
            positions, block_positions, segment_ids, last_visible = layout(batch, c.blank_markers, c.scheme, noise)
            mask = _layer_mask(c.attention, segment_ids, last_visible)
        else:
            positions, block_positions, mask = batch["positions"], batch["block_positions"], batch["mask"]
        embed = lambda rows, name: nn.Embed(  # noqa: E731
            rows,
            c.hidden,
            dtype=c.dtype,
            embedding_init=_param(nn.initializers.normal(0.02), (None, "embed")),
            name=name,
        )
        words = _word_embeddings(c, name="word_embeddings")
        if c.prompt.length:
            x = prompt_embeddings(c.prompt, c.hidden, words, batch["inputs"], c.vocab_size)
        else:
            x = words(batch["inputs"])
        x = x + embed(c.max_len + 1, "position_embeddings")(positions)
        if c.block_positions != "none":
            x = x + embed(c.max_len + 1, "block_position_embeddings")(block_positions)
        x = nn.Dropout(c.dropout, deterministic=deterministic)(x)
        x, cache = _run_layers(c, deterministic, x, mask, cache, None if cache is None else batch["index"])
        x = _constrain(x, *RESIDUAL)
        if scored_positions is not None:
            x = jnp.take_along_axis(x, scored_positions[:, :, None], axis=1)
        x = _layer_norm(c, "final_layernorm")(x)
        if return_hidden:
            return x
        logits = _tied_logits(words, x)
        logits = _constrain(logits, "activation_batch", "activation_length", "activation_vocab")
        return logits if cache is None else (logits, cache)


def _layer_mask(attention: str, segment_ids, last_visible):
    """The form of the mask that attention path `attention` reads (see `Attention`)."""
    if attention == "splash":
        return segment_ids, last_visible
    if attention == "gpu_flash":
        return key_ranges(segment_ids, last_visible)
    return dense_mask(segment_ids, last_visible)


def _word_embeddings(c: GLMConfig, name: str | None = None) -> nn.Embed:
    """The word embeddings, also the tied output projection."""
    init = _param(nn.initializers.normal(0.02), ("vocab", "embed"))
    return nn.Embed(c.vocab_size, c.hidden, dtype=c.dtype, embedding_init=init, name=name)


def _tied_logits(words: nn.Embed, hidden):
    """Float32 logits of final hidden states through the word embeddings: the product takes its inputs in
    the compute dtype (bf16 under model.dtype=bfloat16) and accumulates in float32. Against float32
    inputs, on the default run's validation batches in bf16: the same top-1 accuracy and a loss 2e-5
    apart, and the fastest of the three ways on CPU (benchmarks/README.md, "bf16 output projection")."""
    return jnp.einsum(
        "...h,vh->...v",
        hidden.astype(words.dtype),
        words.embedding.astype(words.dtype),
        preferred_element_type=jnp.float32,
    )


def output_logits(config: GLMConfig, params, hidden):
    """`GLM`'s logits of final hidden states (`return_hidden`), from its parameters."""
    return _word_embeddings(config).apply({"params": params["word_embeddings"]}, hidden, method=_tied_logits)


def init_params(config: GLMConfig, rng: jax.Array, seq_len: int):
    """Boxed (logically partitioned) parameters for batches of length `seq_len`."""
    batch = {name: jnp.zeros((1, seq_len), jnp.int32) for name in ("inputs", "segment_ids", "span_ids")}
    return GLM(config).init(rng, batch)["params"]
