"""Zero-shot evaluation of a trained GLM: perplexity and LAMBADA-style last-word accuracy.

    python -m glm_jax.evaluate --workdir /tmp/glm_tiny [--source default --split validation]
        [--setting both|bidirectional|unidirectional] [--window 126 --stride 63] [--nolambada]

Prints, for the workdir's latest checkpoint and (with `--compare_init`, the default) for the fresh
initialization its run started from: the perplexity of the split's documents in each setting, and
the share of paragraphs whose last word the model predicts exactly (rows of `window + 2` tokens,
contexts cut on the left to fit). See `glm_jax/downstream/zero_shot.py`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from absl import flags

from glm_jax import cli

if TYPE_CHECKING:  # the heavy modules load in the functions, so that --help needs none of them
    import seqio

TASK = "glm_zero_shot_text"
SOURCE_KINDS = ("default", "jsonl:GLOB", "text:GLOB", "tfds:NAME")
# zero_shot.SETTINGS and zero_shot.BLANKS, restated for the flags (tests/test_cli.py checks them).
SETTINGS = ("bidirectional", "unidirectional")
BLANKS = ("mask", "gmask")


def parse_source(spec: str, split: str, text_key: str = "text") -> seqio.DataSource:
    """The text source named by `spec` (one of `SOURCE_KINDS`), holding `split`."""
    import tensorflow as tf

    from glm_jax.data import sources

    kind, _, rest = spec.partition(":")
    if kind == "default" and not rest:
        source = sources.default_corpus_source()
        if split not in source.splits:
            raise ValueError(f"--split={split!r}: the default corpus has splits {tuple(source.splits)}.")
        return source
    if kind in ("jsonl", "text") and rest:
        if not tf.io.gfile.glob(rest):
            raise ValueError(f"--source={spec!r}: no file matches {rest!r}.")
        if kind == "jsonl":
            return sources.jsonl_files({split: rest}, field=text_key)
        return sources.text_files({split: rest})
    if kind == "tfds" and rest:
        return sources.tfds_source(rest, splits={split: split})
    raise ValueError(f"--source={spec!r} is not one of {', '.join(SOURCE_KINDS)}.")


def check_numbers(*, window: int, stride: int, max_documents: int, batch_size: int, min_words: int) -> None:
    """Rejects impossible numeric flags (0 means: the default)."""
    if window and window < 2:
        raise ValueError(f"--window={window} must be at least 2 (or 0 for data.seq_len - 2).")
    if stride < 0 or (window and stride >= window):
        raise ValueError(f"--stride={stride} must be in [1, window - 1] (or 0 for window // 2).")
    for name, value in (("max_documents", max_documents), ("batch_size", batch_size)):
        if value < 0:
            raise ValueError(f"--{name}={value} must be >= 0 (0: all / the run's batch size).")
    if min_words < 1:
        raise ValueError(f"--lambada_min_words={min_words} must be >= 1.")


def resolve_window(c, window: int, stride: int) -> tuple[int, int]:
    """(window, stride) for config `c`: defaults filled in, checked against the model's position table."""
    max_len = c.model.max_len or c.data.seq_len
    window = window or c.data.seq_len - 2
    if window > max_len:
        raise ValueError(f"--window={window} exceeds the model's largest position, {max_len}.")
    stride = stride or max(window // 2, 1)
    if not 1 <= stride < window:
        raise ValueError(f"--stride={stride} must be in [1, window - 1] (window={window}).")
    return window, stride


def run(args) -> dict:
    """Evaluates as `args` (the flag values) say; returns {model name: {metric name: numbers}}."""
    from glm_jax import workdir as workdir_lib
    from glm_jax.data import sources, vocab
    from glm_jax.downstream import zero_shot

    settings = zero_shot.SETTINGS if args.setting == "both" else (args.setting,)
    check_numbers(
        window=args.window,
        stride=args.stride,
        max_documents=args.max_documents,
        batch_size=args.batch_size,
        min_words=args.lambada_min_words,
    )
    source = parse_source(args.source, args.split, args.text_key)
    c = workdir_lib.read_config(workdir_lib.absolute(args.workdir))
    window, stride = resolve_window(c, args.window, args.stride)

    model = workdir_lib.load(args.workdir)
    tokens = vocab.command_tokens(model.vocabulary)
    zero_shot.register_text_task(TASK, source, model.vocabulary, args.text_key)
    with sources.data_errors():  # bad data: one clean DataError naming file:line
        documents = zero_shot.read_documents(TASK, args.split, args.max_documents)
    ids = [d for _, d in documents]
    causal = model.glm_config.causal
    if causal and "bidirectional" in settings:
        print("a left-to-right (causal) model: the unidirectional setting only", flush=True)
        settings = ("unidirectional",)
    examples = zero_shot.lambada_examples((t for t, _ in documents), model.vocabulary, args.lambada_min_words)
    g = model.glm_config
    print(
        f"GLM {g.num_layers}L/{g.hidden}h/{g.heads} heads at step {model.step} ({args.workdir}) | {args.source} "
        f"{args.split}: {len(documents)} documents, {sum(map(len, ids)):,} tokens, {len(examples)} last words | "
        f"window {window}, stride {stride}, blank [{args.blank}]",
        flush=True,
    )
    scorer = zero_shot.ZeroShotScorer(model.trainer, args.batch_size or c.data.batch_size)
    candidates = {f"trained (step {model.step})": model.params}
    if args.compare_init:
        candidates[f"fresh init (seed {c.train.seed})"] = model.trainer.fresh_params(c.train.seed)
    results = {}
    for name, params in candidates.items():
        results[name] = {}
        for setting in settings:
            start = time.perf_counter()
            ppl = zero_shot.perplexity(
                scorer, params, ids, setting=setting, window=window, stride=stride, tokens=tokens, blank=args.blank,
                causal=causal,
            )  # fmt: skip
            results[name][f"perplexity/{setting}"] = ppl
            print(
                f"{name:<22} perplexity {setting:<14} {ppl['perplexity']:10.2f} (nll {ppl['nll']:.4f} over "
                f"{ppl['tokens']:,} tokens, {ppl['windows']:,} windows, {time.perf_counter() - start:.0f}s)",
                flush=True,
            )
        if args.lambada and examples:
            for setting in settings:
                acc = zero_shot.lambada_accuracy(
                    scorer, params, examples, setting=setting, length=window + 2, tokens=tokens, blank=args.blank,
                    causal=causal,
                )  # fmt: skip
                results[name][f"lambada/{setting}"] = acc
                print(
                    f"{name:<22} last word  {setting:<14} {100 * acc['accuracy']:9.2f}% ({acc['correct']}/"
                    f"{acc['words']} words; token accuracy {100 * acc['token_accuracy']:.1f}%)",
                    flush=True,
                )
    if args.lambada and not examples:
        print(f"no passage of {args.split} has a last word after >= {args.lambada_min_words} words; no accuracy")
    return results


main = cli.single_process_main(run, "glm_jax.evaluate")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "A glm_jax workdir (config.json and checkpoints/).")
    flags.DEFINE_string("source", "default", f"Text source: {', '.join(SOURCE_KINDS)}.")
    flags.DEFINE_string("split", "validation", "Split of the source.")
    flags.DEFINE_string("text_key", "text", "Field of the documents' text (jsonl).")
    flags.DEFINE_enum("setting", "both", ["both", *SETTINGS], "Perplexity setting(s) (paper §3.3).")
    flags.DEFINE_integer("window", 0, "Tokens per window (0: data.seq_len - 2, a row of data.seq_len).")
    flags.DEFINE_integer("stride", 0, "New tokens scored per window after the first (0: window // 2).")
    flags.DEFINE_enum("blank", "mask", list(BLANKS), "Part A marker: [MASK] (official) or [gMASK].")
    flags.DEFINE_bool("lambada", True, "Also measure last-word accuracy on the split's paragraphs.")
    flags.DEFINE_integer("lambada_min_words", 10, "Words of context a paragraph needs before its last word.")
    flags.DEFINE_integer("max_documents", 0, "Evaluate the first K documents only (0: all).")
    flags.DEFINE_integer("batch_size", 0, "Rows per forward (0: data.batch_size).")
    flags.DEFINE_bool("compare_init", True, "Also evaluate the fresh initialization the run started from.")
    flags.mark_flags_as_required(["workdir"])
    cli.run(main, "glm_jax.evaluate")
