"""The official seq2seq layout (`Seq2SeqDataset`) as TF ops: Part A (a summary's source or a question's context
and answer, with its blank), Part B (`sop` + the target), the example's contract fields, and the SeqIO task
of a source of examples (`register_seq2seq_task`).

With `prompt.prefix` (`glm_jax.downstream.prompts`), Part A starts with that many continuous prompt tokens
after `[CLS]` (`[CLS] p0 p1 [MASK] Content: source`), taken from the source's budget: our extension, as the
official seq2seq fine-tuning has no continuous prompts (and no spots for `prompt.tokens`)."""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import seqio
import tensorflow as tf

from glm_jax.contract import CommandTokens
from glm_jax.data import tasks, vocab
from glm_jax.downstream import cloze
from glm_jax.downstream import prompts as prompts_lib
from glm_jax.downstream.prompts import NO_PROMPTS, Prompts

FIELDS = ("inputs", "targets", "loss_weights", "span_ids", "part_a", "reference")

PROMPT = " Content:"  # summarization: [CLS] [MASK] PROMPT source
QUESTION = " Question:"  # question generation: [CLS] context QUESTION [MASK] ANSWER answer
ANSWER = " Answer: "


@dataclasses.dataclass(frozen=True)
class Seq2Seq:
    """How the examples of a source become seq2seq examples; each function maps a TF example to a tensor.

    source: the text to summarize (question generation: the context).
    target: the text to generate.
    answer: question generation only: the answer whose question is generated (selects that layout).
    answer_start: question generation: the answer's character offset in the context (int, < 0 unknown), used
      only where the answer's tokens are not found in the context's.
    reference: the reference text for the metric (default: `target`).
    unknown: a text that stands for the vocabulary's unknown token in source and target (Gigaword's
      `[UNK]`): encoded as that token's id, as the official tokenizer encodes its command tokens' texts.
    """

    source: Callable[[dict], tf.Tensor]
    target: Callable[[dict], tf.Tensor]
    answer: Callable[[dict], tf.Tensor] | None = None
    answer_start: Callable[[dict], tf.Tensor] | None = None
    reference: Callable[[dict], tf.Tensor] | None = None
    unknown: str = ""

    @property
    def question_generation(self) -> bool:
        return self.answer is not None


def find(haystack: tf.Tensor, needle: tf.Tensor) -> tf.Tensor:
    """Index of the first occurrence of `needle` in `haystack` (1-D int tensors), -1 if none or `needle` is empty."""
    n, m = tf.size(haystack), tf.size(needle)

    def search():
        windows = tf.signal.frame(haystack, m, 1)  # [n - m + 1, m]
        hits = tf.where(tf.reduce_all(tf.equal(windows, needle[None, :]), axis=1))[:, 0]
        return tf.cast(tf.concat([hits, [-1]], 0)[0], tf.int32)

    return tf.cond((m > 0) & (m <= n), search, lambda: tf.constant(-1, tf.int32))


def encode(text, vocabulary, unknown: str = "", unk: int = 0) -> tf.Tensor:
    """int32 ids of a scalar tf.string (`cloze.encode_text`); with `unknown`, each occurrence of that
    text is the id `unk` and the text between them is encoded piece by piece (empty pieces give nothing),
    as the official tokenizer splits its text at command tokens' texts."""
    if not unknown:
        return cloze.encode_text(text, vocabulary)
    parts = tf.strings.split(tf.reshape(text, []), unknown)
    spec = tf.RaggedTensorSpec([None], tf.int32, ragged_rank=0)

    def piece(part):
        ids = lambda: tf.cast(vocabulary.encode_tf(part), tf.int32)  # noqa: E731
        return tf.cond(tf.strings.length(part) > 0, ids, lambda: tf.zeros([0], tf.int32))

    pieces = tf.map_fn(piece, parts, fn_output_signature=spec)
    unknowns = tf.RaggedTensor.from_tensor(tf.fill([tf.size(parts), 1], unk))
    return tf.concat([pieces, unknowns], axis=1).flat_values[:-1]


def summary_part_a(source, prompt: list[int], vocabulary, tokens: CommandTokens, mask: int, source_len: int,
                   unknown: str = "", prefix: tuple[int, ...] = ()) -> tf.Tensor:  # fmt: skip
    """`[CLS] prefix mask prompt " "+source` (`prompt`: the ids of " Content:"; `prefix`: continuous prompt
    tokens' ids), the source cut so that it holds at most `source_len` tokens."""
    head = [tokens.cls, *prefix, mask, *prompt]
    body = encode(" " + source, vocabulary, unknown, tokens.unk)[: max(source_len - len(head), 0)]
    return tf.concat([tf.constant(head, tf.int32), body], 0)


def question_part_a(context, answer, answer_start, vocabulary, tokens: CommandTokens, mask: int, source_len: int,
                    prefix: tuple[int, ...] = ()):  # fmt: skip
    """`[CLS] prefix context+" Question:" mask " Answer: "+answer`, the context cropped around the answer (module
    docstring) so that it holds at most `source_len` tokens. `answer_start`: int32 offset, < 0 unknown; `prefix`:
    continuous prompt tokens' ids."""
    context_ids = cloze.encode_text(tf.strings.regex_replace(context, r"\s+$", "") + QUESTION, vocabulary)
    answer_ids = cloze.encode_text(ANSWER + answer, vocabulary)[: max(source_len - 2 - len(prefix), 0)]
    budget = source_len - 2 - len(prefix) - tf.size(answer_ids)

    def or_else(at, fallback, use=True):
        return tf.cond((at < 0) & use, fallback, lambda: at)

    def before_answer():  # the token count of the context before the answer's offset
        before = tf.strings.substr(context, 0, answer_start, unit="UTF8_CHAR")
        return tf.size(cloze.encode_text(before, vocabulary))

    def crop():
        at = find(context_ids, cloze.encode_text(" " + answer, vocabulary))
        at = or_else(at, lambda: find(context_ids, cloze.encode_text(answer, vocabulary)))
        at = or_else(at, before_answer, answer_start >= 0)
        begin = tf.where(at >= 0, tf.maximum(at - budget // 2, 0), 0)
        return context_ids[begin : begin + budget]

    context_ids = tf.cond(tf.size(context_ids) > budget, crop, lambda: context_ids)
    return tf.concat([[tokens.cls, *prefix], context_ids, [mask], answer_ids], 0)


def target_ids(target, vocabulary, tokens: CommandTokens, target_len: int, unknown: str = "") -> tf.Tensor:
    """The tokens of `" " + target`, then `eop`, cut to `target_len` tokens."""
    return tf.concat([encode(" " + target, vocabulary, unknown, tokens.unk), [tokens.eop]], 0)[:target_len]


def example(part_a: tf.Tensor, target: tf.Tensor, tokens: CommandTokens) -> dict:
    """The contract's task fields of Part A `part_a` and target ids `target` (tokens, then eop), and `part_a`."""
    a, t = tf.size(part_a), tf.size(target)
    part_b = tf.ones([t], tf.int32)
    return {
        "inputs": tf.concat([part_a, [tokens.sop], target[:-1]], 0),
        "targets": tf.concat([tf.zeros([a], tf.int32), target], 0),
        "loss_weights": tf.concat([tf.zeros([a], tf.int32), part_b], 0),
        "span_ids": tf.concat([tf.zeros([a], tf.int32), part_b], 0),
        "part_a": part_a,
    }


def pad_part_a(ex: dict, source_len: int, pad: int) -> dict:
    """A seq2seq example with Part A padded by `pad` tokens to `source_len`, the pads part of Part A
    (visible to every token, `[PAD]`-padded as the official `Seq2SeqDataset` lays out its examples)."""
    a = tf.size(ex["part_a"])
    pads = source_len - a
    check = tf.debugging.assert_non_negative(pads, message=f"Part A is longer than source_len={source_len}")
    with tf.control_dependencies([check]):
        spread = lambda x, fill: tf.concat([x[:a], tf.fill([pads], fill), x[a:]], 0)  # noqa: E731
    out = {key: spread(ex[key], 0) for key in ("targets", "loss_weights", "span_ids")}
    out["inputs"] = spread(ex["inputs"], pad)
    out["part_a"] = spread(ex["part_a"], pad)
    return ex | out


def to_seq2seq(dataset, *, spec: Seq2Seq, vocabulary, source_len: int, target_len: int, task_mask: bool = False,
               prompts: Prompts = NO_PROMPTS):  # fmt: skip
    """SeqIO preprocessor: source examples → seq2seq examples (the fields of the module docstring)."""
    prompts_lib.spread(prompts.tokens, 0)  # no spots: prompt.tokens is an error, prompt.prefix is taken
    prefix = tuple(prompts.ids(0, prompts.prefix))
    tokens = vocab.command_tokens(vocabulary)
    mask = tokens.smask if task_mask else tokens.mask
    prompt = vocabulary.encode(PROMPT)  # once, here: a vocabulary may encode Python text eagerly only

    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for autograph to rewrite
    def convert(ex):
        source = tf.convert_to_tensor(spec.source(ex), tf.string)
        if spec.question_generation:
            start = spec.answer_start(ex) if spec.answer_start else -1
            start = tf.cast(start, tf.int32)
            part_a = question_part_a(source, spec.answer(ex), start, vocabulary, tokens, mask, source_len, prefix)
        else:
            part_a = summary_part_a(source, prompt, vocabulary, tokens, mask, source_len, spec.unknown, prefix)
        target = spec.target(ex)
        out = example(part_a, target_ids(target, vocabulary, tokens, target_len, spec.unknown), tokens)
        out["reference"] = tf.convert_to_tensor(spec.reference(ex) if spec.reference else target, tf.string)
        return out

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
    """The SeqIO features of a seq2seq task's examples (`FIELDS`)."""
    ids = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(vocabulary.vocab_size), add_eos=False)
    return {
        "inputs": seqio.Feature(vocabulary, add_eos=False),
        "targets": seqio.Feature(vocabulary, add_eos=False),
        "loss_weights": ids(),
        "span_ids": ids(),
        "part_a": ids(),
        "reference": seqio.Feature(seqio.PassThroughVocabulary(0), add_eos=False, dtype=tf.string, rank=0),
    }


def register_seq2seq_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: seqio.Vocabulary,
    spec: Seq2Seq,
    *,
    source_len: int,
    target_len: int,
    task_mask: bool = False,
    preprocessors: Sequence = (),
    shuffle_buffer_size: int = 10_000,
    prompts: Prompts = NO_PROMPTS,
) -> seqio.Task:
    """Registers (or replaces) task `name`: the examples of `source`, after `preprocessors` (source specific,
    e.g. renaming fields), as seq2seq examples of `spec` with Part A of at most `source_len` tokens and targets
    (with eop) of at most `target_len`, Part A opening with the prompt tokens of `prompts.prefix`. An example has
    at most `source_len + target_len` tokens.

    Example (a jsonl of `document` / `title` pairs):

        register_seq2seq_task("my_titles", sources.jsonl_examples({...}, {"document": tf.string,
                              "title": tf.string}), vocabulary,
                              Seq2Seq(lambda ex: ex["document"], lambda ex: ex["title"]),
                              source_len=512, target_len=32)
    """
    vocab.command_tokens(vocabulary)  # a vocabulary without GLM's command tokens fails here, not in the pipeline
    least = (3 if spec.question_generation else len(vocabulary.encode(PROMPT)) + 2) + prompts.prefix
    if source_len < least:
        raise ValueError(f"source_len={source_len} leaves no room for the source: Part A needs {least}+ tokens.")
    if target_len < 1:
        raise ValueError(f"target_len={target_len} must be at least 1.")
    tasks.remove_if_registered(seqio.TaskRegistry, name)
    again = dict(source_len=source_len, target_len=target_len, task_mask=task_mask, preprocessors=preprocessors,
                 shuffle_buffer_size=shuffle_buffer_size)  # fmt: skip
    prompts_lib.remember(name, functools.partial(register_seq2seq_task, name, source, vocabulary, spec, **again))
    convert = functools.partial(
        to_seq2seq,
        spec=spec,
        vocabulary=vocabulary,
        source_len=source_len,
        target_len=target_len,
        task_mask=task_mask,
        prompts=prompts,
    )
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[*preprocessors, convert],
        output_features=output_features(vocabulary),
        shuffle_buffer_size=shuffle_buffer_size,
    )
