"""Sequence-to-sequence fine-tuning data (summarization, question generation) as SeqIO tasks, in the layout
of the official GLM code (`tasks/seq2seq/dataset.py`, `Seq2SeqDataset`) with its recipes (`config_tasks/seq_*.sh`).

Layout of one example (pieces are tokenized on their own, with the official strings; a SentencePiece model that
keeps spaces, as the default one, makes the leading space of a piece a `▁` token of its own, as in `superglue`):

- summarization: Part A = `[CLS] [MASK] " Content:" " "+source`, the source tokens cut so that Part A holds at
  most `source_len` tokens (no eos);
- question generation (`Seq2Seq.answer` given): Part A = `[CLS] context+" Question:" [MASK] " Answer: "+answer`.
  When it is longer than `source_len`, the official crop: the tokens of `context.rstrip() + " Question:"` (one
  piece) are cut to a window of `budget = source_len - len(answer piece) - 2` tokens that starts `budget // 2`
  tokens before the first occurrence of the tokens of `" " + answer` (at 0 at the least; the window is not
  shifted back when it runs past the end, so Part A may be shorter than `source_len`, and " Question:" is kept
  only when the window reaches the end). Where those tokens are not found the official keeps the first `budget`
  tokens; here the tokens of `answer` alone are looked for next (a SentencePiece model that keeps spaces turns
  the leading space into a piece of its own: `" Paris"` is `▁ ▁Paris`, in context `▁Paris`), then, if
  `Seq2Seq.answer_start` gives the answer's character offset, the window starts `budget // 2` tokens before
  the token count of the context before it; only then the first `budget` tokens;
- Part B = `sop` + the target: the tokens of `" " + target` then `eop`, that list cut to `target_len` tokens
  (as the official: a target that is too long loses its `eop`, the cut is not marked).

With `task_mask=True` (GLM-10B style), the marker is `[sMASK]` instead of `[MASK]` (the official
`mask_token = 'sMASK' if self.args.task_mask else 'MASK'`).

A task's examples hold the data contract's task fields and two more:

    inputs        int32 [A+B]   Part A, `sop`, the target tokens but the last
    targets       int32 [A+B]   0 over Part A, then the target tokens (and `eop` unless cut)
    loss_weights  int32 [A+B]   1 on the Part B positions
    span_ids      int32 [A+B]   0 in Part A, 1 in Part B
    part_a        int32 [A]     Part A alone, the prompt for decoding
    reference     string []     the target text, for ROUGE / BLEU

Datasets (`register(dataset, ...)`, `DATASETS`), from TFDS or jsonl files:

| dataset       | TFDS builder                                  | source → target                        |
|---------------|-----------------------------------------------|----------------------------------------|
| cnn_dailymail | cnn_dailymail:3.4.0                           | article → highlights                   |
| xsum          | xsum:1.1.0 (manual download)                  | document → summary                     |
| gigaword      | gigaword:1.2.0                                | document → summary                     |
| squad_qg      | squad_question_generation/split_du:3.0.0      | context + answer → question            |

Our splits "train", "validation", "test" are the builders' splits of the same names. For squad_qg the default
builder is the split of Du et al. (2017), the very files the official script reads (`nqg/raw` train/dev/test
json; TFDS takes each question's first answer). `source="tfds:squad/v1.1:3.0.0"` reads plain SQuAD instead
(first answer and its offset), which has no test split: use "validation" there (the Du test set is carved
from SQuAD's dev set, so it is the nearest).

Text as the official processors: CNN/DM and Gigaword have their curly quotes and en dashes made plain
(`punctuation_standardization`); Gigaword's `UNK` and `<unk>` become `[UNK]`, encoded as the vocabulary's
unknown token (BERT's id 100, as the official tokenizer encodes that text), and its PTB brackets and HTML
entities are undone (`-lrb-` → `(`, `&amp;` → `&`, ...). CNN/DM's highlights (one sentence per line in TFDS)
are joined with spaces in the target, as the official single-line data, and keep their newlines in `reference`
(for summary-level ROUGE-L). XSum's lines are joined with spaces, as the official `XSumProcessor`.
`reference` is the processed target text.

The official `Seq2SeqDataset` also pads Part A with `[PAD]` to `source_len`, every token attending to the
pads: `pad_part_a` adds them to an example (fine-tuning does with `finetune.pad_part_a`, on in the recipes).
What still differs from the official code, and why: docs/official_differences.md.
"""

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Sequence

import seqio
import tensorflow as tf

from glm_jax.contract import CommandTokens
from glm_jax.data import sources, tasks, vocab
from glm_jax.downstream import cloze
from glm_jax.downstream.superglue import standardize

DATASETS = ("cnn_dailymail", "xsum", "gigaword", "squad_qg")
SPLITS = ("train", "validation", "test")
FIELDS = ("inputs", "targets", "loss_weights", "span_ids", "part_a", "reference")

PROMPT = " Content:"  # summarization: [CLS] [MASK] PROMPT source
QUESTION = " Question:"  # question generation: [CLS] context QUESTION [MASK] ANSWER answer
ANSWER = " Answer: "


# ---------------------------------------------------------------------------------------------------------------
# Fine-tuning recipes


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Official fine-tuning and decoding settings of a dataset.

    `batch_size` is the script's `--batch-size`, which the official `scripts/ds_finetune_seq2seq.sh` gives to
    each GPU (DeepSpeed over NUM_WORKERS=2 x NUM_GPUS_PER_WORKER=8, so 16x that in all); glm_jax's
    `data.batch_size` is global. All scripts use linear decay, warmup 0.06, weight decay 0.1 and label smoothing
    0.1 (`--lr-decay-style linear --warmup 0.06 --weight-decay 1.0e-1 --label-smoothing 0.1`); decoding is
    beam search keeping the top 2*beams candidates (`--select-topk`).
    """

    source_len: int  # --src-seq-length
    target_len: int  # --tgt-seq-length (target tokens + eop; also the most decoding steps)
    lr: float  # --lr
    epochs: int  # --epochs
    batch_size: int  # --batch-size (per GPU)
    num_beams: int  # --num-beams
    length_penalty: float  # --length-penalty
    no_repeat_ngram_size: int = 0  # --no-repeat-ngram-size (official default 0: off)
    min_target_len: int = 0  # --min-tgt-length (official default 0)
    metric: str = "rouge"
    lr_decay: str = "linear"
    warmup: float = 0.06
    weight_decay: float = 0.1
    label_smoothing: float = 0.1


RECIPES = {
    # config_tasks/seq_cnndm.sh (lr, epochs, batch size) and seq_cnndm_org.sh (the README's script for the
    # untokenized data; the same task args: --src-seq-length 608 --tgt-seq-length 160 --min-tgt-length 55
    # --length-penalty 0.7 --no-repeat-ngram-size 3 --num-beams 5). seq_cnndm_org.sh's own train args vary
    # over its versions (--lr 1e-5, --epochs 10 / --batch-size 8 or --epochs 20 / --batch-size 16).
    "cnn_dailymail": Recipe(
        source_len=608,
        target_len=160,
        lr=3e-5,  # seq_cnndm.sh --lr 3e-5
        epochs=15,  # seq_cnndm.sh --epochs 15
        batch_size=8,  # seq_cnndm.sh --batch-size 8
        num_beams=5,
        length_penalty=0.7,
        no_repeat_ngram_size=3,
        min_target_len=55,
    ),
    # config_tasks/seq_xsum.sh
    "xsum": Recipe(
        source_len=608,  # --src-seq-length 608
        target_len=60,  # --tgt-seq-length 60
        lr=1e-5,  # --lr 1e-5
        epochs=6,  # --epochs 6
        batch_size=8,  # --batch-size 8
        num_beams=6,  # --num-beams 6
        length_penalty=1.0,  # --length-penalty 1.0
        no_repeat_ngram_size=3,  # --no-repeat-ngram-size 3
        min_target_len=10,  # --min-tgt-length 10
    ),
    # config_tasks/seq_gigaword.sh
    "gigaword": Recipe(
        source_len=192,  # --src-seq-length 192
        target_len=32,  # --tgt-seq-length 32
        lr=3e-5,  # --lr 3e-5
        epochs=10,  # --epochs 10
        batch_size=16,  # --batch-size 16
        num_beams=5,  # --num-beams 5
        length_penalty=0.6,  # --length-penalty 0.6
        no_repeat_ngram_size=3,  # --no-repeat-ngram-size 3
        min_target_len=0,  # --min-tgt-length 0
    ),
    # config_tasks/seq_squad_generation.sh (no --no-repeat-ngram-size). The official in-training metric of every
    # seq2seq task is ROUGE (tasks/seq2seq/finetune.py); QG is reported in BLEU-4 on the written hypotheses.
    "squad_qg": Recipe(
        source_len=464,  # --src-seq-length 464
        target_len=48,  # --tgt-seq-length 48
        lr=2e-5,  # --lr 2e-5
        epochs=10,  # --epochs 10
        batch_size=8,  # --batch-size 8
        num_beams=5,  # --num-beams 5
        length_penalty=0.7,  # --length-penalty 0.7
        min_target_len=0,  # --min-tgt-length 0
        metric="bleu",
    ),
}


# ---------------------------------------------------------------------------------------------------------------
# Layout (TF)


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
                   unknown: str = "") -> tf.Tensor:  # fmt: skip
    """`[CLS] mask prompt " "+source` (`prompt`: the ids of " Content:"), the source cut so that it holds
    at most `source_len` tokens."""
    head = [tokens.cls, mask, *prompt]
    body = encode(" " + source, vocabulary, unknown, tokens.unk)[: max(source_len - len(head), 0)]
    return tf.concat([tf.constant(head, tf.int32), body], 0)


def question_part_a(context, answer, answer_start, vocabulary, tokens: CommandTokens, mask: int, source_len: int):
    """`[CLS] context+" Question:" mask " Answer: "+answer`, the context cropped around the answer (module
    docstring) so that it holds at most `source_len` tokens. `answer_start`: int32 offset, < 0 unknown."""
    context_ids = cloze.encode_text(tf.strings.regex_replace(context, r"\s+$", "") + QUESTION, vocabulary)
    answer_ids = cloze.encode_text(ANSWER + answer, vocabulary)[: max(source_len - 2, 0)]
    budget = source_len - 2 - tf.size(answer_ids)

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
    return tf.concat([[tokens.cls], context_ids, [mask], answer_ids], 0)


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


def to_seq2seq(dataset, *, spec: Seq2Seq, vocabulary, source_len: int, target_len: int, task_mask: bool = False):
    """SeqIO preprocessor: source examples → seq2seq examples (the fields of the module docstring)."""
    tokens = vocab.command_tokens(vocabulary)
    mask = tokens.smask if task_mask else tokens.mask
    prompt = vocabulary.encode(PROMPT)  # once, here: a vocabulary may encode Python text eagerly only

    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for autograph to rewrite
    def convert(ex):
        source = tf.convert_to_tensor(spec.source(ex), tf.string)
        if spec.question_generation:
            start = spec.answer_start(ex) if spec.answer_start else -1
            start = tf.cast(start, tf.int32)
            part_a = question_part_a(source, spec.answer(ex), start, vocabulary, tokens, mask, source_len)
        else:
            part_a = summary_part_a(source, prompt, vocabulary, tokens, mask, source_len, spec.unknown)
        target = spec.target(ex)
        out = example(part_a, target_ids(target, vocabulary, tokens, target_len, spec.unknown), tokens)
        out["reference"] = tf.convert_to_tensor(spec.reference(ex) if spec.reference else target, tf.string)
        return out

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


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
) -> seqio.Task:
    """Registers (or replaces) task `name`: the examples of `source`, after `preprocessors` (source specific,
    e.g. renaming fields), as seq2seq examples of `spec` with Part A of at most `source_len` tokens and targets
    (with eop) of at most `target_len`. An example has at most `source_len + target_len` tokens.

    Example (a jsonl of `document` / `title` pairs):

        register_seq2seq_task("my_titles", sources.jsonl_examples({...}, {"document": tf.string,
                              "title": tf.string}), vocabulary,
                              Seq2Seq(lambda ex: ex["document"], lambda ex: ex["title"]),
                              source_len=512, target_len=32)
    """
    vocab.command_tokens(vocabulary)  # a vocabulary without GLM's command tokens fails here, not in the pipeline
    least = 3 if spec.question_generation else len(vocabulary.encode(PROMPT)) + 2
    if source_len < least:
        raise ValueError(f"source_len={source_len} leaves no room for the source: Part A needs {least}+ tokens.")
    if target_len < 1:
        raise ValueError(f"target_len={target_len} must be at least 1.")
    tasks.remove_if_registered(seqio.TaskRegistry, name)
    ids = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(vocabulary.vocab_size), add_eos=False)
    features = {
        "inputs": seqio.Feature(vocabulary, add_eos=False),
        "targets": seqio.Feature(vocabulary, add_eos=False),
        "loss_weights": ids(),
        "span_ids": ids(),
        "part_a": ids(),
        "reference": seqio.Feature(seqio.PassThroughVocabulary(0), add_eos=False, dtype=tf.string, rank=0),
    }
    convert = functools.partial(
        to_seq2seq,
        spec=spec,
        vocabulary=vocabulary,
        source_len=source_len,
        target_len=target_len,
        task_mask=task_mask,
    )
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[*preprocessors, convert],
        output_features=features,
        shuffle_buffer_size=shuffle_buffer_size,
    )


# ---------------------------------------------------------------------------------------------------------------
# Datasets: text as the official processors (TF)

# The official gigaword_detokenize's PTB brackets and HTML entities.
_GIGAWORD = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}"}
_GIGAWORD |= {"&amp;": "&", "&lt;": "<", "&gt;": ">"}


def _strip(text):
    return tf.strings.strip(text)


def _join_lines(text, joiner: str = " "):
    """Lines stripped and joined with `joiner`, empty lines dropped."""
    return tf.strings.strip(tf.strings.regex_replace(text, r"[ \t\r]*\n\s*", joiner))


UNKNOWN = "[UNK]"  # Gigaword's unknown words, as the official detokenizer writes them


def _gigaword(text):
    """The official `gigaword_detokenize`: `UNK` and `<unk>` become `[UNK]`, then PTB brackets and HTML
    entities are undone (in that order, so `&lt;unk&gt;` stays `<unk>`)."""
    text = standardize(_strip(text))
    for old, new in {"UNK": UNKNOWN, "<unk>": UNKNOWN, **_GIGAWORD}.items():
        text = tf.strings.regex_replace(text, re.escape(old), new, replace_global=True)
    return text


@dataclasses.dataclass(frozen=True)
class _Dataset:
    tfds: str  # default TFDS builder
    fields: Callable[[dict], dict]  # TFDS example -> the canonical fields
    spec: Seq2Seq  # over the canonical fields
    keys: tuple[str, ...]  # canonical fields read from jsonl, in order: (source, target[, answer])


def _summary_fields(source_key: str, target_key: str) -> Callable[[dict], dict]:
    return lambda ex: {"source": ex[source_key], "target": ex[target_key]}


def _squad_fields(ex: dict) -> dict:
    """Du et al.'s split (context_passage, answer, question) or plain SQuAD (first answer and its offset)."""
    if "answers" in ex:
        first = lambda values, empty: tf.concat([values, [empty]], 0)[0]  # noqa: E731
        return {
            "context": ex["context"],
            "answer": first(ex["answers"]["text"], ""),
            "answer_start": tf.cast(first(ex["answers"]["answer_start"], -1), tf.int32),
            "question": ex["question"],
        }
    return {"context": ex["context_passage"], "answer": ex["answer"], "question": ex["question"]}


_SUMMARY_KEYS = ("source", "target")
_DATASETS = {
    "cnn_dailymail": _Dataset(
        tfds="cnn_dailymail:3.4.0",
        fields=_summary_fields("article", "highlights"),
        spec=Seq2Seq(
            source=lambda ex: standardize(_strip(ex["source"])),
            target=lambda ex: standardize(_join_lines(ex["target"])),
            reference=lambda ex: standardize(_join_lines(ex["target"], "\n")),
        ),
        keys=_SUMMARY_KEYS,
    ),
    "xsum": _Dataset(
        tfds="xsum:1.1.0",
        fields=_summary_fields("document", "summary"),
        spec=Seq2Seq(source=lambda ex: _join_lines(ex["source"]), target=lambda ex: _join_lines(ex["target"])),
        keys=_SUMMARY_KEYS,
    ),
    "gigaword": _Dataset(
        tfds="gigaword:1.2.0",
        fields=_summary_fields("document", "summary"),
        spec=Seq2Seq(
            source=lambda ex: _gigaword(ex["source"]), target=lambda ex: _gigaword(ex["target"]), unknown=UNKNOWN
        ),
        keys=_SUMMARY_KEYS,
    ),
    "squad_qg": _Dataset(
        tfds="squad_question_generation/split_du:3.0.0",
        fields=_squad_fields,
        spec=Seq2Seq(
            source=lambda ex: ex["context"],
            target=lambda ex: ex["question"],
            answer=lambda ex: ex["answer"],
            answer_start=lambda ex: ex.get("answer_start", -1),
        ),
        keys=("context", "question", "answer"),
    ),
}

XSUM_MANUAL_FILE = "xsum-extracts-from-downloads.tar.gz"


class ManualTfdsSource(seqio.TfdsDataSource):
    """A TFDS source whose builder needs manually downloaded files: loading it unprepared fails with what to do."""

    def __init__(self, tfds_name: str, splits, instructions: str):
        super().__init__(tfds_name=tfds_name, splits=splits)
        self._instructions = instructions

    def _prepared(self) -> bool:
        try:
            return self.tfds_dataset.builder.is_prepared()
        except Exception:  # any failure to look means: not usable as it is
            return False

    def get_dataset(self, split=None, shuffle=True, seed=None, shard_info=None, **kwargs) -> tf.data.Dataset:
        try:
            return super().get_dataset(split, shuffle, seed, shard_info, **kwargs)
        except Exception as error:
            if self._prepared():
                raise
            raise FileNotFoundError(
                f"TFDS dataset {self.tfds_dataset.name} is not prepared and TFDS cannot build it by itself: "
                f"{self._instructions} ({type(error).__name__}: {error})"
            ) from error


def _xsum_instructions() -> str:
    return (
        "download and extract the XSum articles as "
        "https://github.com/EdinburghNLP/XSum/tree/master/XSum-Dataset#running-the-download-and-extraction-scripts "
        f"says, put {XSUM_MANUAL_FILE} in a directory DIR and run `tfds build xsum --manual_dir DIR` (add "
        "`--data_dir` to build it where this program reads TFDS data, by default ~/tensorflow_datasets; the build "
        "also downloads the split file XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json), or read the data with "
        "source='jsonl:DIR'"
    )


def _tfds_splits(builder: str) -> dict[str, str]:
    base = builder.split("/")[0].split(":")[0]
    return {split: split for split in SPLITS if not (base == "squad" and split == "test")}


def _dataset(dataset: str) -> _Dataset:
    if dataset not in _DATASETS:
        raise ValueError(f"Unknown seq2seq dataset {dataset!r}; expected one of {DATASETS}.")
    return _DATASETS[dataset]


def dataset_spec(dataset: str) -> Seq2Seq:
    """The `Seq2Seq` of `dataset` (its text processing), over the canonical fields of `examples`."""
    return _dataset(dataset).spec


def examples(
    dataset: str,
    source="tfds",
    *,
    source_key: str | None = None,
    target_key: str | None = None,
    answer_key: str = "answer",
) -> tuple[seqio.DataSource, list]:
    """(SeqIO source, preprocessors that give its examples the canonical fields) of `dataset` from `source`:

    - "tfds": the default builder (module docstring); "tfds:BUILDER": another builder with the same features
      (for squad_qg also plain SQuAD, e.g. "tfds:squad/v1.1:3.0.0");
    - "jsonl:DIR": `DIR/train.jsonl`, `DIR/validation.jsonl` and `DIR/test.jsonl` if present, one JSON object a
      line with string keys `source_key` / `target_key` (default "source" / "target"; for squad_qg "context" /
      "question", and `answer_key`);
    - a `seqio.DataSource` of examples with the canonical fields (summaries: source, target; squad_qg: context,
      answer, question and optionally answer_start), returned as is.

    The dataset's text processing (module docstring) applies to every source: it is part of `dataset_spec`.
    Reading an unprepared `xsum` builder fails with what to do (`tfds build xsum --manual_dir DIR`).
    """
    spec = _dataset(dataset)
    if isinstance(source, seqio.DataSource):
        return source, []
    if source == "tfds" or (isinstance(source, str) and source.startswith("tfds:")):
        builder = spec.tfds if source == "tfds" else source.removeprefix("tfds:")
        splits = _tfds_splits(builder)
        if dataset == "xsum":
            tfds_source = ManualTfdsSource(builder, splits, _xsum_instructions())
        else:
            tfds_source = seqio.TfdsDataSource(tfds_name=builder, splits=splits)
        fields = spec.fields

        def canonical(ds):
            return ds.map(fields, num_parallel_calls=tf.data.AUTOTUNE)

        return tfds_source, [canonical]
    if not (isinstance(source, str) and source.startswith("jsonl:")):
        raise ValueError(f"Unknown seq2seq source {source!r}; expected 'tfds', 'tfds:BUILDER', 'jsonl:DIR' or a "
                         "seqio.DataSource.")  # fmt: skip
    directory = source.removeprefix("jsonl:")
    paths = {split: os.path.join(directory, f"{split}.jsonl") for split in SPLITS}
    missing = [paths[s] for s in ("train", "validation") if not tf.io.gfile.exists(paths[s])]
    if missing:
        raise ValueError(f"{dataset} source {source!r} lacks {missing}.")
    paths = {split: path for split, path in paths.items() if tf.io.gfile.exists(path)}
    given = (source_key, target_key, answer_key)
    keys = {field: key or field for field, key in zip(spec.keys, given, strict=False)}
    return sources.jsonl_examples(paths, dict.fromkeys(spec.keys, tf.string), keys), []


def register(
    dataset: str,
    vocabulary: seqio.Vocabulary,
    *,
    source="tfds",
    source_len: int | None = None,
    target_len: int | None = None,
    task_mask: bool = False,
    name: str | None = None,
    source_key: str | None = None,
    target_key: str | None = None,
    answer_key: str = "answer",
) -> str:
    """Registers (or replaces) SeqIO task `name` (default `seq2seq_{dataset}`, `_tm` added with `task_mask`):
    `dataset` (one of `DATASETS`) from `source` (see `examples`) in the official layout, Part A of at most
    `source_len` tokens and targets of at most `target_len` (default: the dataset's recipe). Returns the name."""
    spec = _dataset(dataset)
    recipe = RECIPES[dataset]
    data, preprocessors = examples(dataset, source, source_key=source_key, target_key=target_key, answer_key=answer_key)
    name = name or f"seq2seq_{dataset}" + ("_tm" if task_mask else "")
    register_seq2seq_task(
        name,
        data,
        vocabulary,
        spec.spec,
        source_len=recipe.source_len if source_len is None else source_len,
        target_len=recipe.target_len if target_len is None else target_len,
        task_mask=task_mask,
        preprocessors=preprocessors,
    )
    return name


def register_pairs(
    name: str,
    split_to_pattern: dict[str, str],
    vocabulary: seqio.Vocabulary,
    *,
    source_len: int,
    target_len: int,
    source_key: str = "source",
    target_key: str = "target",
    task_mask: bool = False,
) -> seqio.Task:
    """Registers (or replaces) task `name`: a user's own source → target pairs, JSON-lines files (`split → glob`)
    of objects with string keys `source_key` and `target_key`, in the summarization layout (texts as they are)."""
    data = sources.jsonl_examples(
        split_to_pattern, {"source": tf.string, "target": tf.string}, {"source": source_key, "target": target_key}
    )
    spec = Seq2Seq(source=lambda ex: ex["source"], target=lambda ex: ex["target"])
    return register_seq2seq_task(
        name, data, vocabulary, spec, source_len=source_len, target_len=target_len, task_mask=task_mask
    )


def finetune_config(dataset: str):
    """The fine-tuning config of `dataset`: its official recipe over `config.finetune_config()`."""
    from glm_jax import config as config_lib

    if dataset not in RECIPES:
        raise ValueError(f"Unknown seq2seq dataset {dataset!r}; known: {', '.join(DATASETS)}.")
    r = RECIPES[dataset]
    c = config_lib.finetune_config()
    c.finetune.update(
        kind="seq2seq", seq2seq=dataset, metric=r.metric, epochs=r.epochs, answer_len=r.target_len,
        num_beams=r.num_beams, length_penalty=r.length_penalty, no_repeat_ngram_size=r.no_repeat_ngram_size,
        min_target_len=r.min_target_len, label_smoothing=r.label_smoothing, pad_part_a=True,
    )  # fmt: skip
    c.data.update(seq_len=r.source_len + r.target_len, batch_size=r.batch_size)
    c.optimizer.update(peak_lr=r.lr, warmup_fraction=r.warmup, weight_decay=r.weight_decay)
    return c
