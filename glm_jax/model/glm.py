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

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"model.hidden={self.hidden} is not divisible by model.heads={self.heads}.")


def _param(init, names):
    return nn.with_logical_partitioning(init, names)


class Attention(nn.Module):
    config: GLMConfig

    @nn.compact
    def __call__(self, x, mask, deterministic):
        c = self.config
        head_dim = c.hidden // c.heads
        qkv = nn.DenseGeneral(
            (3, c.heads, head_dim),
            dtype=c.dtype,
            kernel_init=_param(nn.initializers.normal(0.02), ("embed", None, "heads", "kv")),
            bias_init=_param(nn.initializers.zeros, (None, "heads", "kv")),
            name="query_key_value",
        )(x)
        rng = None if deterministic or c.attention_dropout == 0.0 else self.make_rng("dropout")
        out = dot_product_attention(
            qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], mask, dropout_rate=c.attention_dropout, dropout_rng=rng
        )
        return nn.DenseGeneral(
            c.hidden,
            axis=(-2, -1),
            dtype=c.dtype,
            kernel_init=_param(_output_init(c), ("heads", "kv", "embed")),
            bias_init=_param(nn.initializers.zeros, ("embed",)),
            name="dense",
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
        h = nn.gelu(h, approximate=True)
        return nn.Dense(
            c.hidden,
            dtype=c.dtype,
            kernel_init=_param(_output_init(c), ("mlp", "embed")),
            bias_init=_param(nn.initializers.zeros, ("embed",)),
            name="dense_4h_to_h",
        )(h)


def _output_init(c: GLMConfig):
    return nn.initializers.normal(0.02 / math.sqrt(2 * c.num_layers))


def _layer_norm(c: GLMConfig, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=c.layer_norm_eps,
        dtype=c.dtype,
        scale_init=_param(nn.initializers.ones, ("embed",)),
        bias_init=_param(nn.initializers.zeros, ("embed",)),
        name=name,
    )


class Block(nn.Module):
    config: GLMConfig

    @nn.compact
    def __call__(self, x, mask, deterministic):
        c = self.config
        drop = nn.Dropout(c.dropout, deterministic=deterministic)
        x = x + drop(Attention(c, name="attention")(_layer_norm(c, "input_layernorm")(x), mask, deterministic))
        return x + drop(MLP(c, name="mlp")(_layer_norm(c, "post_attention_layernorm")(x)))


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
        for i in range(c.num_layers):
            x = Block(c, name=f"layers_{i}")(x, mask, deterministic)
        x = _layer_norm(c, "final_layernorm")(x)
        return words.attend(x.astype(jnp.float32)).astype(jnp.float32)


def init_params(config: GLMConfig, rng: jax.Array, seq_len: int):
    """Boxed (logically partitioned) parameters for batches of length `seq_len`."""
    batch = {name: jnp.zeros((1, seq_len), jnp.int32) for name in ("inputs", "segment_ids", "span_ids")}
    return GLM(config).init(rng, batch)["params"]
