"""An independent NumPy forward pass of the official GLM, written from its description (issue 6).

It reads the official state dict and the official batch format directly and shares no code with
glm_jax: pre-LN blocks (LayerNorm eps 1e-5), fused QKV whose rows are Q, K, V with the heads as
contiguous slices of h/heads, scores scaled by 1/sqrt(h/heads) and set to -65504 where a key is
not visible (visible: key < sep or key <= query), tanh GeLU, output logits tied to the word
embeddings. Everything is computed in float64.
"""

import numpy as np

MASKED = -65504.0
EPS = 1e-5


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def linear(x, sd, name):
    """PyTorch `Linear`: weight [out, in]."""
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def forward(state_dict, heads, tokens, position_ids, sep, return_hidden=False):
    """Logits [B, L, V] of the official model on `tokens [B, L]`, `position_ids [B, 2, L]`, `sep [B]`; with
    `return_hidden`, the final LayerNorm's output [B, L, h] (what the official classifier pools)."""
    sd = {k: np.asarray(v, np.float64) for k, v in state_dict.items()}
    tokens = np.asarray(tokens)
    batch, length = tokens.shape
    hidden = sd["word_embeddings.weight"].shape[1]
    head_dim = hidden // heads

    x = sd["word_embeddings.weight"][tokens]
    x = x + sd["transformer.position_embeddings.weight"][position_ids[:, 0]]
    x = x + sd["transformer.block_position_embeddings.weight"][position_ids[:, 1]]

    q_idx = np.arange(length)[:, None]
    k_idx = np.arange(length)[None, :]
    visible = (k_idx[None] < np.asarray(sep)[:, None, None]) | (k_idx <= q_idx)[None]  # [B, Lq, Lk]

    layer = 0
    while f"transformer.layers.{layer}.input_layernorm.weight" in sd:
        p = f"transformer.layers.{layer}."
        h = layer_norm(x, sd[p + "input_layernorm.weight"], sd[p + "input_layernorm.bias"])
        qkv = linear(h, sd, p + "attention.query_key_value")  # [B, L, 3h]
        q, k, v = (qkv[..., i * hidden : (i + 1) * hidden] for i in range(3))
        split = lambda t: t.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim)  # [B, heads, Lq, Lk]
        scores = np.where(visible[:, None], scores, MASKED)
        context = softmax(scores) @ v  # [B, heads, L, head_dim]
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = x + linear(context, sd, p + "attention.dense")
        h = layer_norm(x, sd[p + "post_attention_layernorm.weight"], sd[p + "post_attention_layernorm.bias"])
        x = x + linear(gelu(linear(h, sd, p + "mlp.dense_h_to_4h")), sd, p + "mlp.dense_4h_to_h")
        layer += 1

    x = layer_norm(x, sd["transformer.final_layernorm.weight"], sd["transformer.final_layernorm.bias"])
    return x if return_hidden else x @ sd["word_embeddings.weight"].T
