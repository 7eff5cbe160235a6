"""Fills the blanks of prompts (or continues them) with a trained GLM.

    python -m glm_jax.generate --workdir /tmp/glm_tiny --text "The [MASK] module provides [MASK]."
    python -m glm_jax.generate --workdir DIR --prompts prompts.txt --batch_size 16 --strategy beam --num_beams 4

Loads the workdir's latest checkpoint and config. Every `[MASK]` / `[sMASK]` of a prompt is filled
left to right, each with its own Part B span ending at `eop`, later blanks seeing earlier fills; a
`[gMASK]`, or a prompt without any blank, continues the text. Prints one filled text per prompt.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import TYPE_CHECKING

from absl import flags

from glm_jax import cli

if TYPE_CHECKING:  # the heavy modules load in the functions, so that --help needs none of them
    import seqio

    from glm_jax.contract import CommandTokens
    from glm_jax.downstream.decoding import DecodeOptions, Decoder

# DecodeOptions' defaults, restated so that the flags are defined without JAX (tests/test_cli.py
# checks that the two agree).
DECODE_DEFAULTS = {
    "strategy": "greedy",
    "max_new_tokens": 32,
    "min_new_tokens": 0,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "num_beams": 4,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "seed": 0,
}


@functools.cache
def _markers() -> tuple[dict[str, str], re.Pattern]:
    """{blank marker text: CommandTokens field} and the pattern that splits a prompt at the markers."""
    from glm_jax.data.command_tokens import PIECES

    markers = {PIECES[name]: name for name in ("mask", "smask", "gmask")}
    return markers, re.compile("(" + "|".join(re.escape(m) for m in markers) + ")")


def encode_prompt(text: str, vocabulary: seqio.Vocabulary, tokens: CommandTokens) -> list[int]:
    """Token ids of `text`, with the blank markers `[MASK]`, `[sMASK]`, `[gMASK]` as their ids."""
    markers, split = _markers()
    ids = []
    for part in split.split(text):
        if part in markers:
            ids.append(getattr(tokens, markers[part]))
        elif part.strip():
            ids += vocabulary.encode(part.strip())
    return ids


def filled_texts(decoder: Decoder, params, vocabulary: seqio.Vocabulary, texts: list[str]) -> list[str]:
    """Each text with its blanks replaced by the model's fills (or continued, without a blank; a
    left-to-right model continues every text, which then holds no blank)."""
    from glm_jax.downstream.decoding import Prompts

    tokens, causal = decoder.tokens, decoder.config.causal
    prompts = Prompts([encode_prompt(t, vocabulary, tokens) for t in texts], tokens, causal=causal)
    fills, lengths = decoder.fill(params, prompts)
    out = []
    for row, fill, length in zip(prompts.rows, fills, lengths, strict=True):
        if causal:  # the prompt and its continuation
            out.append(vocabulary.decode(row + fill[0, : length[0]].tolist()))
            continue
        ids, blank = [], 0
        for token in row[1:-1]:  # without [CLS] and eos
            if token in tokens.blank_markers:
                ids += fill[blank, : length[blank]].tolist()
                blank += 1
            else:
                ids.append(token)
        out.append(vocabulary.decode(ids))
    return out


def read_prompts(text: str, path: str) -> list[str]:
    """The prompts named by the flags: `--text`, or the lines of the file `--prompts` (a blank line is
    an empty prompt, answered by an empty line, so outputs keep the file's line numbers)."""
    if bool(text) == bool(path):
        raise ValueError("Give exactly one of --text or --prompts.")
    if text:
        return [text]
    import tensorflow as tf

    from glm_jax.data import sources

    if not tf.io.gfile.exists(path):
        raise ValueError(f"--prompts={path}: no such file.")
    with tf.io.gfile.GFile(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final newline ends the last line; it starts none
    prompts = []
    for number, line in enumerate(lines, 1):
        problem = sources.text_problem(line)
        if problem:
            raise ValueError(f"--prompts={path}:{number}: {problem}; prompts must be UTF-8 text, one per line.")
        prompts.append(line.decode("utf-8").strip())
    if not any(prompts):
        raise ValueError(f"--prompts={path} holds no prompt (one per line).")
    return prompts


def options_from_flags(args) -> DecodeOptions:
    from glm_jax.downstream.decoding import DecodeOptions

    fields = {f.name for f in dataclasses.fields(DecodeOptions)}
    return DecodeOptions(**{name: getattr(args, name) for name in fields})


def run(args) -> list[str]:
    from glm_jax import workdir as workdir_lib
    from glm_jax.data.vocab import command_tokens
    from glm_jax.downstream.decoding import Decoder

    texts = read_prompts(args.text, args.prompts)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size={args.batch_size} must be >= 1.")
    options = options_from_flags(args)
    c = workdir_lib.read_config(workdir_lib.absolute(args.workdir))  # checks the options before any loading
    options.validate(c.model.max_len or c.data.seq_len)
    model = workdir_lib.load(args.workdir)
    decoder = Decoder(model.glm_config, command_tokens(model.vocabulary), options, model.trainer.partitioning)
    results = []
    for start in range(0, len(texts), args.batch_size):
        batch = texts[start : start + args.batch_size]
        prompts = [t for t in batch if t]
        fills = iter(filled_texts(decoder, model.params, model.vocabulary, prompts) if prompts else [])
        for text in batch:  # a blank line is answered by a blank line
            result = next(fills) if text else ""
            print(result, flush=True)
            results.append(result)
    return results


main = cli.single_process_main(run, "glm_jax.generate")


if __name__ == "__main__":
    defaults = DECODE_DEFAULTS
    flags.DEFINE_string("workdir", None, "A glm_jax workdir (config.json and checkpoints/).")
    flags.DEFINE_string("text", "", "One prompt; [MASK]/[sMASK] mark blanks, [gMASK] (or no blank) continues.")
    flags.DEFINE_string("prompts", "", "A file of prompts, one per line.")
    flags.DEFINE_integer("batch_size", 8, "Prompts decoded together.")
    flags.DEFINE_enum("strategy", defaults["strategy"], ["greedy", "sample", "beam"], "Decoding strategy.")
    flags.DEFINE_integer("max_new_tokens", defaults["max_new_tokens"], "Most tokens per blank.")
    flags.DEFINE_integer("min_new_tokens", defaults["min_new_tokens"], "Fewest tokens per blank (eop is held back).")
    flags.DEFINE_float("temperature", defaults["temperature"], "Sampling temperature.")
    flags.DEFINE_integer("top_k", defaults["top_k"], "Sample from the k most likely tokens (0: all).")
    flags.DEFINE_float("top_p", defaults["top_p"], "Sample from the smallest set holding this probability.")
    flags.DEFINE_integer("num_beams", defaults["num_beams"], "Beams (beam search).")
    flags.DEFINE_float("length_penalty", defaults["length_penalty"], "Beam hypotheses rank by log-prob / len**this.")
    flags.DEFINE_integer("no_repeat_ngram_size", defaults["no_repeat_ngram_size"], "Ban repeated n-grams in a fill.")
    flags.DEFINE_integer("seed", defaults["seed"], "Sampling seed.")
    flags.mark_flags_as_required(["workdir"])
    cli.run(main, "glm_jax.generate")
