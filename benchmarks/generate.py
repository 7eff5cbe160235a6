"""Decoding speed: generated tokens/s with the KV cache vs recomputing the full forward per token.

    python -m benchmarks.generate [--models glm_tiny,glm_base] [--context 256] [--new 64] [--batch 1]

For each model (random weights of its config's shape, the default vocabulary), a prompt of
`--context` tokens from the default corpus ending in [gMASK] is continued by exactly `--new`
greedy tokens, twice in the same run:
- cached: `glm_jax.downstream.decoding.Decoder` (Part A once, then one token per step against the KV cache);
- full: a jitted loop that runs the whole model over the whole sequence for every new token and
  takes the argmax at the last position (what decoding costs without a cache).
Both are compiled before timing and produce the same tokens (checked).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from glm_jax import config as config_lib  # noqa: E402
from glm_jax.config import model_config  # noqa: E402
from glm_jax.data import corpus, vocab  # noqa: E402
from glm_jax.downstream.decoding import DecodeOptions, Decoder, Prompts  # noqa: E402
from glm_jax.model.glm import GLM, init_params  # noqa: E402


def prompt_ids(length: int, v) -> list[int]:
    """`length - 3` tokens of validation text then [gMASK] (with [CLS] and eos: `length` in Part A)."""
    ids = []
    for document in corpus.documents("validation"):
        ids += v.encode(document)
        if len(ids) >= length:
            break
    return ids[: length - 3] + [v.command_tokens.gmask]


def full_recompute(glm_config, tokens, part_a: np.ndarray, new: int):
    """A jitted function: `new` greedy tokens, each from a full forward over the whole sequence."""
    batch, a = part_a.shape
    width = a + new + 1
    model = GLM(glm_config)

    def generate(params):
        inputs = jnp.zeros((batch, width), jnp.int32).at[:, :a].set(part_a).at[:, a].set(tokens.sop)
        span_ids = jnp.where(jnp.arange(width) >= a, 1, 0)[None].repeat(batch, 0)

        def step(i, inputs):
            at = a + i  # the position whose prediction is the next token
            segment_ids = (jnp.arange(width) <= at)[None].repeat(batch, 0).astype(jnp.int32)
            batch_ = {"inputs": inputs, "segment_ids": segment_ids, "span_ids": span_ids * segment_ids}
            logits = model.apply({"params": params}, batch_)[:, at]
            chosen = jnp.argmax(logits.at[:, tokens.eop].set(-jnp.inf), axis=-1).astype(jnp.int32)
            return inputs.at[:, at + 1].set(chosen)

        return jax.lax.fori_loop(0, new, step, inputs)[:, a + 1 :]

    return jax.jit(generate)


def measure(name: str, context: int, new: int, batch: int) -> None:
    c = config_lib.load_config_file(f"configs/{name}.py")
    c.model.max_len = max(c.model.max_len, c.data.seq_len, context + new + 1)
    v = vocab.default_vocabulary()
    tokens = v.command_tokens
    glm_config = model_config(c, v.vocab_size, tokens)
    params = nn.unbox(init_params(glm_config, jax.random.key(0), 16))
    prompts = Prompts([prompt_ids(context, v)] * batch, tokens)
    assert prompts.length == context

    decoder = Decoder(glm_config, tokens, DecodeOptions(max_new_tokens=new, min_new_tokens=new))
    decoder.fill(params, prompts)  # compile
    start = time.perf_counter()
    cached, lengths = decoder.fill(params, prompts)
    cached_s = time.perf_counter() - start
    assert (lengths == new).all()

    compiled = full_recompute(glm_config, tokens, prompts.inputs, new).lower(params).compile()
    start = time.perf_counter()
    full = np.asarray(compiled(params))
    full_s = time.perf_counter() - start
    same = np.array_equal(full, cached[:, 0])

    generated = batch * new
    print(
        f"{name:10s} {sum(x.size for x in jax.tree.leaves(params)):>12,} {generated / cached_s:12.1f} "
        f"{generated / full_s:12.1f} {full_s / cached_s:8.1f}x   {'yes' if same else 'NO'}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="glm_tiny,glm_base")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    print(f"{jax.devices()[0].platform}, batch {args.batch}, {args.context} tokens of context, {args.new} generated")
    print(f"{'model':10s} {'parameters':>12s} {'cached tok/s':>12s} {'full tok/s':>12s} {'speedup':>9s}   same tokens")
    for name in args.models.split(","):
        measure(name, args.context, args.new, args.batch)


if __name__ == "__main__":
    main()
