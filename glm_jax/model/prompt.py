"""Continuous prompts (P-tuning, Liu et al. 2021) as the official GLM code has them (`model/prompt.py`).

`PromptSpell` holds `spell_embeddings` `[length, hidden]` and maps them through a head: `lstm`, a 2-layer
bidirectional LSTM then `Linear(2h, h), ReLU, Linear(h, h)`; `mlp`, `Linear(h, h), ReLU, Linear(h, h)`; or
`none`. Its output row k is the input embedding of the k-th prompt token of a row (the official
`embeddings[batch_index, prompt_pos] = prompt_spell()`). Parameters keep PyTorch's names, layouts and
initializations (`lstm_head/weight_ih_l0` `[4h, in]` with gates i, f, g, o; `mlp_head_0/weight` `[out, in]`;
embeddings N(0, 1)), so the official `prompt_spell.*` tensors map one to one. The LSTM is big (4 matrices
of `[4h, h]` or `[4h, 2h]` per layer and direction: 722M parameters at h = 4096), so matrices shard as
`[mlp, embed]` (out over the tensor axis, in over fsdp) and the spell embeddings as `[None, embed]`.

In a row, prompt token k has the id `vocab_size + k`: past every row of the word embeddings, so the data
carry no extra field (`GLM` substitutes the spell's row k there, `prompt_embeddings`).
"""

import dataclasses
import random

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PROMPT_FUNCS = ("lstm", "mlp", "none")  # the official --prompt-func choices
SPELL = "prompt_spell"  # the spell's top-level parameter key, the official module name
INIT_WORDS = 5000  # prompt.init draws word embeddings of ids below this (the official `num_words`)


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    length: int = 0  # the spell length, prompt tokens per row (prompt.tokens + prompt.prefix); 0: no prompts
    func: str = "lstm"  # one of PROMPT_FUNCS


MATRIX, VECTOR = ("mlp", "embed"), ("mlp",)  # logical axes of the heads' weights `[out, in]` and biases `[out]`


def _torch_uniform(fan_in: int, names: tuple[str, ...]):
    """PyTorch's default init of `nn.Linear` and `nn.LSTM` parameters, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for a
    weight (`names` MATRIX) or bias (VECTOR)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -(fan_in**-0.5), fan_in**-0.5)

    return nn.with_logical_partitioning(init, names)


class TorchLinear(nn.Module):
    """`x W^T + b` with `weight` `[out, in]` and `bias` `[out]`, as PyTorch's `nn.Linear`."""

    features: int

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        weight = self.param("weight", _torch_uniform(fan_in, MATRIX), (self.features, fan_in))
        bias = self.param("bias", _torch_uniform(fan_in, VECTOR), (self.features,))
        return x @ weight.T + bias


def lstm_direction(x, w_ih, w_hh, b_ih, b_hh, reverse: bool):
    """`[T, h]` hidden states of one LSTM direction over `x` `[T, in]` (PyTorch's gates i, f, g, o), from zero state;
    with `reverse`, run from the last step to the first (outputs stay in step order)."""
    hidden = w_hh.shape[1]

    def step(carry, x_t):
        h, c = carry
        i, f, g, o = jnp.split(x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((hidden,), x.dtype)
    return jax.lax.scan(step, (zeros, zeros), x, reverse=reverse)[1]


class BiLSTM(nn.Module):
    """PyTorch's `nn.LSTM(h, h, num_layers=2, bidirectional=True)` over one sequence `[T, h]` → `[T, 2h]`."""

    hidden: int
    layers: int = 2

    @nn.compact
    def __call__(self, x):
        h = self.hidden
        for layer in range(self.layers):
            directions = []
            for suffix in ("", "_reverse"):

                def param(name, shape, suffix=suffix, layer=layer):
                    names = MATRIX if len(shape) == 2 else VECTOR
                    return self.param(f"{name}_l{layer}{suffix}", _torch_uniform(h, names), shape)

                w_ih, w_hh = param("weight_ih", (4 * h, x.shape[-1])), param("weight_hh", (4 * h, h))
                b_ih, b_hh = param("bias_ih", (4 * h,)), param("bias_hh", (4 * h,))
                directions.append(lstm_direction(x, w_ih, w_hh, b_ih, b_hh, reverse=bool(suffix)))
            x = jnp.concatenate(directions, axis=-1)
        return x


class PromptSpell(nn.Module):
    """`()` → `[length, hidden]` float32 prompt embeddings (the official `PromptSpell.forward`)."""

    config: PromptConfig
    hidden: int

    @nn.compact
    def __call__(self):
        c, h = self.config, self.hidden
        init = nn.with_logical_partitioning(nn.initializers.normal(1.0), (None, "embed"))  # nn.Embedding's N(0, 1)
        x = self.param("spell_embeddings", init, (c.length, h))
        if c.func == "lstm":
            x = BiLSTM(h, name="lstm_head")(x)
        if c.func in ("lstm", "mlp"):
            x = TorchLinear(h, name="mlp_head_2")(nn.relu(TorchLinear(h, name="mlp_head_0")(x)))
        return x


def prompt_embeddings(config: PromptConfig, hidden: int, words: nn.Embed, inputs, vocab_size: int):
    """Word embeddings of `inputs`, where an id `vocab_size + k` is prompt token k: the spell's row k there."""
    spell = PromptSpell(config, hidden, name=SPELL)()
    k = inputs - vocab_size
    is_prompt = k >= 0
    x = words(jnp.where(is_prompt, 0, inputs))
    return jnp.where(is_prompt[..., None], spell.astype(x.dtype)[jnp.clip(k, 0, config.length - 1)], x)


def init_embedding(word_embeddings, length: int, task_tokens, seed: int) -> jax.Array:
    """`[length, hidden]` spell embeddings as the official `init_embedding` (`prompt.init`): row i is the embedding
    of a random id below `INIT_WORDS`, mixed with that of a random task token (a verbalizer word's) by a random
    ratio, `word * r + task * (1 - r)`; without task tokens the word's alone. Drawn in the official order from
    `random.Random(seed)` (the official code draws from Python's global generator); jit-able, the draws made when
    traced."""
    rng = random.Random(seed)
    rows = []
    for _ in range(length):
        word = word_embeddings[rng.randrange(INIT_WORDS)]
        if task_tokens:
            task = word_embeddings[rng.choice(list(task_tokens))]
            ratio = rng.random()
            word = word * ratio + task * (1 - ratio)
        rows.append(word)
    return jnp.stack(rows).astype(jnp.float32)


def to_official(spell: dict) -> dict[str, np.ndarray]:
    """The official `prompt_spell.*` tensors (names without that prefix) of the spell's parameters: the same arrays,
    `mlp_head_0` as `mlp_head.0`."""
    out = {"spell_embeddings.weight": spell["spell_embeddings"]}
    for module, params in spell.items():
        if module != "spell_embeddings":
            official = module.replace("mlp_head_", "mlp_head.")
            out.update({f"{official}.{name}": value for name, value in params.items()})
    return {name: np.asarray(value) for name, value in out.items()}
