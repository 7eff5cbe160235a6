"""The GLM Transformer (paper §2.2, official code) as a pure Flax module.

`GLM(config).apply({'params': params}, batch)` maps a batch of contract fields to float32 logits
`[B, L, vocab]`. Pre-LayerNorm blocks `h = x + Attn(LN(x)); y = h + MLP(LN(h))`, fused QKV with
bias, 4h tanh-GeLU MLP, word + position + block-position embeddings, final LayerNorm, output tied
to the word embeddings. Every parameter carries logical axis names (see `glm_jax.sharding`).
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from glm_jax.model.attention import dot_product_attention
from glm_jax.model.layout import layout


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

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"model.hidden={self.hidden} is not divisible by model.heads={self.heads}.")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"model.remat={self.remat!r} is not one of {sorted(REMAT_POLICIES)}.")


# What a layer keeps for the backward pass; the rest is recomputed. Names are set by checkpoint_name.
REMAT_POLICIES = {
    "none": None,  # no rematerialization: everything is kept
    "save_dots": jax.checkpoint_policies.save_only_these_names("qkv", "attention_out", "mlp_in", "mlp_out"),
    "full": jax.checkpoint_policies.nothing_saveable,
}


def _param(init, names):
    return nn.with_logical_partitioning(init, names)


def _constrain(x, *names):
    """Pins an activation's layout by logical names (active under `nn.logical_axis_rules` and a mesh)."""
    return nn.with_logical_constraint(x, names)


class Projection(nn.Module):
    """`x @ kernel + bias` over the last `len(in_shape)` axes of x; kernel `[*in_shape, *out_shape]`.

    Like `nn.DenseGeneral`, but the kernel is created in its final shape, so its logical axis
    names (`names`, one per kernel axis) hold at initialization and under sharding rules alike.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    names: tuple[str | None, ...]
    stddev: float
    dtype: str

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel", _param(nn.initializers.normal(self.stddev), self.names), (*self.in_shape, *self.out_shape)
        )
        out_names = self.names[len(self.in_shape) :]
        bias = self.param("bias", _param(nn.initializers.zeros, out_names), self.out_shape)
        y = jnp.tensordot(x.astype(self.dtype), kernel.astype(self.dtype), axes=len(self.in_shape))
        return y + bias.astype(self.dtype)


class Attention(nn.Module):
    config: GLMConfig

    @nn.compact
    def __call__(self, x, mask, deterministic):
        c = self.config
        head_dim = c.hidden // c.heads
        qkv = Projection(
            (c.hidden,), (3, c.heads, head_dim), ("embed", None, "heads", "kv"), 0.02, c.dtype, name="query_key_value"
        )(x)
        qkv = _constrain(qkv, "activation_batch", "activation_length", None, "activation_heads", None)
        qkv = checkpoint_name(qkv, "qkv")
        rng = None if deterministic or c.attention_dropout == 0.0 else self.make_rng("dropout")
        out = dot_product_attention(
            qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], mask, dropout_rate=c.attention_dropout, dropout_rng=rng
        )
        out = checkpoint_name(out, "attention_out")
        return Projection(
            (c.heads, head_dim), (c.hidden,), ("heads", "kv", "embed"), _output_std(c), c.dtype, name="dense"
        )(out)


class MLP(nn.Module):
    config: GLMConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        h = nn.Dense(
            c.mlp_ratio * c.hidden,
            dtype=c.dtype,
            kernel_init=_param(nn.initializers.normal(0.02), ("embed", "mlp")),
            bias_init=_param(nn.initializers.zeros, ("mlp",)),
            name="dense_h_to_4h",
        )(x)
        h = _constrain(h, "activation_batch", "activation_length", "activation_mlp")
        h = nn.gelu(checkpoint_name(h, "mlp_in"), approximate=True)
        out = nn.Dense(
            c.hidden,
            dtype=c.dtype,
            kernel_init=_param(nn.initializers.normal(_output_std(c)), ("mlp", "embed")),
            bias_init=_param(nn.initializers.zeros, ("embed",)),
            name="dense_4h_to_h",
        )(h)
        return checkpoint_name(out, "mlp_out")


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
    """One pre-LN layer; `(x, mask) → (x, None)`, the carry form `nn.scan` needs."""

    config: GLMConfig
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, mask):
        c = self.config
        drop = nn.Dropout(c.dropout, deterministic=self.deterministic)
        h = Attention(c, name="attention")(_layer_norm(c, "input_layernorm")(x), mask, self.deterministic)
        x = x + drop(h)
        return x + drop(MLP(c, name="mlp")(_layer_norm(c, "post_attention_layernorm")(x))), None


def _layers(c: GLMConfig, deterministic: bool):
    """The layer stack: unrolled (`layers_0`, `layers_1`, ...) or scanned (`layers`, stacked on axis 0)."""
    block = (
        Block if c.remat == "none" else nn.remat(Block, policy=REMAT_POLICIES[c.remat], prevent_cse=not c.scan_layers)
    )
    if c.scan_layers:
        scanned = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=(nn.broadcast,),
            length=c.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        return [scanned(c, deterministic, name="layers")]
    return [block(c, deterministic, name=f"layers_{i}") for i in range(c.num_layers)]


class GLM(nn.Module):
    config: GLMConfig

    @nn.compact
    def __call__(self, batch, deterministic: bool = True):
        c = self.config
        positions, block_positions, mask = layout(batch, c.blank_markers)
        embed = lambda rows, name: nn.Embed(  # noqa: E731
            rows,
            c.hidden,
            dtype=c.dtype,
            embedding_init=_param(nn.initializers.normal(0.02), (None, "embed")),
            name=name,
        )
        words = nn.Embed(
            c.vocab_size,
            c.hidden,
            dtype=c.dtype,
            embedding_init=_param(nn.initializers.normal(0.02), ("vocab", "embed")),
            name="word_embeddings",
        )
        x = words(batch["inputs"])
        x = x + embed(c.max_len + 1, "position_embeddings")(positions)
        x = x + embed(c.max_len + 1, "block_position_embeddings")(block_positions)
        x = nn.Dropout(c.dropout, deterministic=deterministic)(x)
        residual = ("activation_batch", "activation_length", "activation_embed")
        for layer in _layers(c, deterministic):
            x, _ = layer(_constrain(x, *residual), mask)
        x = _layer_norm(c, "final_layernorm")(_constrain(x, *residual))
        logits = words.attend(x.astype(jnp.float32)).astype(jnp.float32)
        return _constrain(logits, "activation_batch", "activation_length", "activation_vocab")


def init_params(config: GLMConfig, rng: jax.Array, seq_len: int):
    """Boxed (logically partitioned) parameters for batches of length `seq_len`."""
    batch = {name: jnp.zeros((1, seq_len), jnp.int32) for name in ("inputs", "segment_ids", "span_ids")}
    return GLM(config).init(rng, batch)["params"]
