"""The official `GLMForSequenceClassification` (model/downstream.py): a row's final hidden state at its
pool token, then a dense layer with tanh, dropout and a linear layer to the logits.

A row is `[CLS] text_a [SEP] text_b [eos]` then padding (`rows`); `sep`, the official `attention_mask`,
is its number of tokens. The pool token (`--pool-token`, `finetune.pool_token`) of a row of sep = 6:

    index      0     1  2  3      4  5      6      7
    token      [CLS] a1 a2 [SEP]  b1 [eos]  pad    pad
    cls        ^                                          index 0
    pad                               ^                   index sep - 1: the [eos] ([PAD] in BERT's vocabulary)
    start                                   ^             index sep: the first padding token

`cls` and `pad` sit in the text, Part A of the data contract (every token sees the whole text). The
official `start` token is padding the model lets see the text (its mask: key < sep, or key <= query),
an [eos] at position 0 and block position 0, which no contract row holds: it runs after the text as one
more token on the KV cache (`decoding.prefill_step`), exactly what the official model computes there.

A classification task gives `outputs` logits from its one row (one per class); a multiple-choice task
(COPA, ReCoRD) has one row per choice and a head of one output, so a question's logits are its rows'
(the official `num_class=1` head over `[B, C, L]` inputs). The head's parameters (`params["classifier"]`:
`pool_layer`, `multichoice_head`, the official names) start as PyTorch's default `Linear` does: weights and
biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Its dropout is the model's (`model.dropout`, 0.1 in fine-tuning:
the official --output-dropout and --hidden-dropout are both 0.1 by default).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from glm_jax.downstream.cloze import scoring
from glm_jax.downstream.decoding import init_cache, prefill_step
from glm_jax.model.glm import GLM, GLMConfig

POOL_TOKENS = ("cls", "start", "pad")  # finetune.pool_token, the official --pool-token choices
HEAD = "classifier"  # params[HEAD]: the head, beside the transformer's parameters


def pool_positions(segment_ids, pool_token: str) -> jax.Array:
    """`[N]` index of each row's pool token (see the module docstring); an empty row pools index 0."""
    sep = jnp.sum(segment_ids > 0, axis=-1, dtype=jnp.int32)
    return {"cls": jnp.zeros_like(sep), "pad": jnp.maximum(sep - 1, 0), "start": sep}[pool_token]


class Head(nn.Module):
    """`[N, hidden]` pooled states → `[N, outputs]` float32 logits: tanh(dense), dropout, dense."""

    outputs: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, pooled, deterministic: bool = True):
        hidden = pooled.shape[-1]

        def torch_default(key, shape, dtype=jnp.float32):  # both layers' fan_in is `hidden`
            return jax.random.uniform(key, shape, dtype, -(hidden**-0.5), hidden**-0.5)

        def dense(features, name):
            kernel = nn.with_logical_partitioning(torch_default, ("embed", None))
            bias = nn.with_logical_partitioning(torch_default, (None,))
            return nn.Dense(features, kernel_init=kernel, bias_init=bias, name=name)

        x = jnp.tanh(dense(hidden, "pool_layer")(pooled.astype(jnp.float32)))
        x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
        return dense(self.outputs, "multichoice_head")(x)


def pooled_hidden(config: GLMConfig, params, inputs, segment_ids, pool_token: str, eos: int, *,
                  deterministic: bool = True, rng=None) -> jax.Array:  # fmt: skip
    """`[N, hidden]` final hidden state of each row of `inputs` `[N, L]` at its pool token.

    `params` are the transformer's; with `deterministic=False`, dropout draws from `rng`.
    """
    text_rngs, start_rngs = ({}, {}) if rng is None else ({"dropout": key} for key in jax.random.split(rng))
    model = functools.partial(GLM(config).apply, {"params": params}, deterministic=deterministic)
    if pool_token != "start":
        rows = {"inputs": inputs, "segment_ids": segment_ids, "span_ids": jnp.zeros_like(inputs)}
        at = pool_positions(segment_ids, pool_token)[:, None]
        return model(rows, rngs=text_rngs, scored_positions=at, return_hidden=True)[:, 0]
    # The text into a cache of L + 1 slots (logits at one position only), then the start token in the last.
    n, length = inputs.shape
    zeros = jnp.zeros((n, 1), jnp.int32)
    step, valid = prefill_step(config, inputs, segment_ids, length + 1)
    _, cache = model(step, rngs=text_rngs, cache=init_cache(config, n, length + 1), scored_positions=zeros)
    start = {
        "inputs": jnp.full((n, 1), eos, jnp.int32),
        "positions": zeros,
        "block_positions": zeros,
        "mask": (valid | (jnp.arange(length + 1) == length))[:, None, None, :],
        "index": length,
    }
    return model(start, rngs=start_rngs, cache=cache, return_hidden=True)[:, 0]


@dataclasses.dataclass(frozen=True)
class Objective:
    """The classifier's logits and loss in `Trainer`'s form (`objective(glm_config, params, batch, ...)`).

    `batch`: `inputs`, `segment_ids` `[B, R, L]` (R rows per question), `choice_mask` `[B, C]` (the real
    classes or choices, C = R * outputs) and `label` `[B]`; `loss` one of `scoring.LOSSES`, over the logits.
    """

    pool_token: str
    eos: int
    outputs: int  # logits per row: the classes, or 1 (a row per choice)
    loss: str = "ce"

    def head(self, config: GLMConfig) -> Head:
        return Head(self.outputs, config.dropout)

    def logits(self, config: GLMConfig, params, batch, *, deterministic: bool = True, rng=None) -> jax.Array:
        """`[B, C]` logits of every question's classes or choices."""
        b, r, length = batch["inputs"].shape
        keys = (None, None) if rng is None else jax.random.split(rng)
        transformer = {k: v for k, v in params.items() if k != HEAD}
        flat = lambda x: x.reshape(b * r, length)  # noqa: E731
        pooled = pooled_hidden(config, transformer, flat(batch["inputs"]), flat(batch["segment_ids"]), self.pool_token,
                               self.eos, deterministic=deterministic, rng=keys[0])  # fmt: skip
        rngs = {} if rng is None else {"dropout": keys[1]}
        out = self.head(config).apply({"params": params[HEAD]}, pooled, deterministic=deterministic, rngs=rngs)
        return out.reshape(b, r * self.outputs)

    def __call__(self, config, params, batch, *, deterministic: bool = True, rng=None) -> dict:
        logits = self.logits(config, params, batch, deterministic=deterministic, rng=rng)
        return scoring.score_sums(logits, batch["choice_mask"] > 0, batch["label"], loss=self.loss)

    def scores(self, config, params, batch) -> jax.Array:
        """`[B, C]` logits, -inf for padded choices: the prediction is their argmax."""
        return jnp.where(batch["choice_mask"] > 0, self.logits(config, params, batch), -jnp.inf)
