"""Fills the blanks of prompts (or continues them) with a trained GLM.

    python -m glm_jax.generate --workdir /tmp/glm_tiny --text "The [MASK] module provides [MASK]."
    python -m glm_jax.generate --workdir DIR --prompts prompts.txt --batch_size 16 --strategy beam --num_beams 4

Loads the workdir's latest checkpoint and config. Every `[MASK]` / `[sMASK]` of a prompt is filled
left to right, each with its own Part B span ending at `eop`, later blanks seeing earlier fills; a
`[gMASK]`, or a prompt without any blank, continues the text. Prints one filled text per prompt.
"""

import dataclasses
import re

import seqio
import tensorflow as tf
from absl import app, flags

from glm_jax import cli
from glm_jax.data.command_tokens import PIECES, CommandTokens
from glm_jax.data.vocab import command_tokens
from glm_jax.downstream.decoding import DecodeOptions, Decoder, Prompts
from glm_jax.training import workdir as workdir_lib

_MARKERS = {PIECES[name]: name for name in ("mask", "smask", "gmask")}
_SPLIT = re.compile("(" + "|".join(re.escape(m) for m in _MARKERS) + ")")


def encode_prompt(text: str, vocabulary: seqio.Vocabulary, tokens: CommandTokens) -> list[int]:
    """Token ids of `text`, with the blank markers `[MASK]`, `[sMASK]`, `[gMASK]` as their ids."""
    ids = []
    for part in _SPLIT.split(text):
        if part in _MARKERS:
            ids.append(getattr(tokens, _MARKERS[part]))
        elif part.strip():
            ids += vocabulary.encode(part.strip())
    return ids


def filled_texts(decoder: Decoder, params, vocabulary: seqio.Vocabulary, texts: list[str]) -> list[str]:
    """Each text with its blanks replaced by the model's fills (or continued, without a blank)."""
    tokens = decoder.tokens
    prompts = Prompts([encode_prompt(t, vocabulary, tokens) for t in texts], tokens)
    fills, lengths = decoder.fill(params, prompts)
    out = []
    for row, fill, length in zip(prompts.rows, fills, lengths, strict=True):
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
    """The prompts named by the flags: `--text`, or the non-empty lines of the file `--prompts`."""
    if bool(text) == bool(path):
        raise ValueError("Give exactly one of --text or --prompts.")
    if text:
        return [text]
    if not tf.io.gfile.exists(path):
        raise ValueError(f"--prompts={path}: no such file.")
    with tf.io.gfile.GFile(path) as f:
        prompts = [line.strip() for line in f if line.strip()]
    if not prompts:
        raise ValueError(f"--prompts={path} holds no prompt (one per line).")
    return prompts


def options_from_flags(args) -> DecodeOptions:
    fields = {f.name for f in dataclasses.fields(DecodeOptions)}
    return DecodeOptions(**{name: getattr(args, name) for name in fields})


def run(args) -> list[str]:
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
        for text in filled_texts(decoder, model.params, model.vocabulary, texts[start : start + args.batch_size]):
            print(text, flush=True)
            results.append(text)
    return results


main = cli.single_process_main(run, "glm_jax.generate")


if __name__ == "__main__":
    defaults = DecodeOptions()
    flags.DEFINE_string("workdir", None, "A glm_jax workdir (config.json and checkpoints/).")
    flags.DEFINE_string("text", "", "One prompt; [MASK]/[sMASK] mark blanks, [gMASK] (or no blank) continues.")
    flags.DEFINE_string("prompts", "", "A file of prompts, one per line.")
    flags.DEFINE_integer("batch_size", 8, "Prompts decoded together.")
    flags.DEFINE_enum("strategy", defaults.strategy, ["greedy", "sample", "beam"], "Decoding strategy.")
    flags.DEFINE_integer("max_new_tokens", defaults.max_new_tokens, "Most tokens per blank.")
    flags.DEFINE_integer("min_new_tokens", defaults.min_new_tokens, "Fewest tokens per blank (eop is held back).")
    flags.DEFINE_float("temperature", defaults.temperature, "Sampling temperature.")
    flags.DEFINE_integer("top_k", defaults.top_k, "Sample from the k most likely tokens (0: all).")
    flags.DEFINE_float("top_p", defaults.top_p, "Sample from the smallest set holding this probability.")
    flags.DEFINE_integer("num_beams", defaults.num_beams, "Beams (beam search).")
    flags.DEFINE_float("length_penalty", defaults.length_penalty, "Beam hypotheses rank by log-prob / len**this.")
    flags.DEFINE_integer("no_repeat_ngram_size", defaults.no_repeat_ngram_size, "Ban repeated n-grams in a fill.")
    flags.DEFINE_integer("seed", defaults.seed, "Sampling seed.")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
