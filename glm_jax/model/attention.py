"""Scaled dot-product attention over a boolean visibility mask (the reference XLA back end)."""

import jax
import jax.numpy as jnp


def dot_product_attention(q, k, v, mask, *, dropout_rate=0.0, dropout_rng=None):
    """Softmax attention with scores and probabilities in float32.

    Args:
      q, k, v: `[B, L, heads, head_dim]`.
      mask: `[B, 1, L, L]` bool, True where query q may attend to key k. A query that sees no key
        (padding) gets a uniform average, never NaN.
      dropout_rate, dropout_rng: dropout on the attention probabilities (training only).
    Returns `[B, L, heads, head_dim]` in q's dtype.
    """
    scale = q.shape[-1] ** -0.5
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    if dropout_rate > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
