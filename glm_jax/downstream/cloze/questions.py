"""Cloze questions as SeqIO tasks: a pattern with one blank, and candidate answers to score in it.

GLM does NLU by filling a blank (paper §2.3). A task's example is rewritten by a *pattern* into
Part A, `[CLS] pieces-with-one-[MASK] [eos]`; each candidate answer is a Part B span that fills
the blank, `sop` + its tokens, scored on its tokens and `eop`. Two kinds of answers:

- a *verbalizer*: one word per label, each a single token; its score is the log-probability of
  that token at the `sop` position (no `eop`), as the official single-token cloze;
- *candidates*: texts of any length given by the example (COPA's choices, ReCoRD's entities);
  each scores the sum of the log-probabilities of its tokens and `eop`.

A pattern returns a list of pieces: plain strings or scalar `tf.string` tensors (kept whole),
`shortenable(text)` (may be cut from its end), `MASK` and `PROMPT`; or, where the official pattern has
two segments (its `parts_a` and `parts_b`, as RTE's), a tuple of two such lists. Each piece is
tokenized on its own, as the official code does.

`PROMPT` is a spot for continuous prompt tokens, where the official pattern has `None` (P-tuning,
`glm_jax.downstream.prompts`): `prompt.tokens` spread over the spots as the official
`replace_prompt_tokens` spreads them, `prompt.prefix` more before the first piece. Prompt token k of a
row (in row order) has the id `base + k`, past the model's word embeddings, whose spell row k it stands
for (`glm_jax.model.prompt`). Without prompts the spots are dropped. With 3 tokens, pattern
`[PROMPT, shortenable(passage), PROMPT, " Question:", question, PROMPT, MASK]` gives
`[CLS] p0 passage p1 Question: question p2 [MASK] [eos]`; with 2 of them and a prefix of 1,
`[CLS] p0 p1 passage p2 Question: question [MASK] [eos]`. Prompt tokens are never cut but count in
the length.

Truncation is the official `PVP.truncate`, done for each answer: with an answer of n tokens (its
tokens and `eop`; 1 for a verbalizer's `sop`), Part A may hold `seq_len - n` tokens. The excess is
removed one token at a time from the segment whose shortenable pieces hold more tokens (the second
on a tie), within a segment from the end of its last non-empty shortenable piece. Answers and the
non-shortenable pieces are never cut. Answers of different lengths can so need different cuts: a
question then has several *Part A layouts*, layout 0 the longest, and each answer is scored with its
own (answers that need the same cut share one layout, and with it the cached Part A).

A task's examples hold, per question:

    inputs          int32 [ΣA]     the Part A ids of each layout, one after another (usually one layout)
    part_a_lengths  int32 [P]      the length of each layout
    choice_ids      int32 [C, T]   each answer's target ids (tokens, then eop; a verbalizer id alone), 0-padded
    choice_lengths  int32 [C]      how many of them are real
    choice_part_a   int32 [C]      the layout each answer is scored with
    label           int32 []       index of the gold answer (-1: unknown)
    group           int64 []       question id that groups examples for a metric (MultiRC, ReCoRD), else -1
    truncated       int32 []       1 if a shortenable piece was cut for some answer
    choice_texts    string [C]     the answers as text
    answers         string [G]     gold answer texts, where a metric needs them (ReCoRD), else empty
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np
import seqio
import tensorflow as tf

from glm_jax.contract import CommandTokens
from glm_jax.data import tasks, vocab
from glm_jax.downstream import prompts as prompts_lib
from glm_jax.downstream.prompts import NO_PROMPTS, Prompts, spread


class _Mask:
    def __repr__(self):
        return "MASK"


MASK = _Mask()  # the one blank of a pattern


class _Prompt:
    def __repr__(self):
        return "PROMPT"


PROMPT = _Prompt()  # a spot for continuous prompt tokens (the official pattern's None), see `Prompts`


@dataclasses.dataclass(frozen=True)
class Shortenable:
    text: object  # str or scalar tf.string


def shortenable(text) -> Shortenable:
    """A piece that may be cut from its end to make the example fit (a passage, a premise, ...)."""
    return Shortenable(text)


@dataclasses.dataclass(frozen=True)
class Cloze:
    """How the examples of a source become cloze questions.

    pattern: TF example → pieces (see module docstring), with exactly one `MASK`.
    verbalizer: label i → a word that is one token (single-token answers), or
    candidates: TF example → 1-D `tf.string` of candidate texts (multi-token answers).
    label: TF example → int32 index of the gold verbalizer word or candidate (-1 unknown).
    group: TF example → int64 question id for grouped metrics (default: -1).
    answers: TF example → 1-D `tf.string` of gold texts for text metrics (default: none).
    """

    pattern: Callable[[dict], Sequence]
    verbalizer: Sequence[str] = ()
    candidates: Callable[[dict], tf.Tensor] | None = None
    label: Callable[[dict], tf.Tensor] = lambda ex: ex["label"]
    group: Callable[[dict], tf.Tensor] | None = None
    answers: Callable[[dict], tf.Tensor] | None = None

    def __post_init__(self):
        if bool(self.verbalizer) == (self.candidates is not None):
            raise ValueError("A cloze task takes exactly one of `verbalizer` (words) or `candidates` (a function).")

    @property
    def single_token(self) -> bool:
        return bool(self.verbalizer)


FIELDS = ("inputs", "part_a_lengths", "choice_ids", "choice_lengths", "choice_part_a", "label", "group", "truncated",
          "choice_texts", "answers")  # fmt: skip


def verbalizer_ids(words: Sequence[str], vocabulary: seqio.Vocabulary) -> list[int]:
    """The one token of each verbalizer word; a word of several tokens is an error naming it."""
    ids = []
    for word in words:
        pieces = vocabulary.encode(word)
        if len(pieces) != 1:
            raise ValueError(
                f"Verbalizer word {word!r} is {len(pieces)} tokens {pieces} in this vocabulary, not one; "
                "choose a single-token word or score the labels as multi-token candidates."
            )
        ids.append(pieces[0])
    return ids


def encode_text(text, vocabulary) -> tf.Tensor:
    """int32 ids of a scalar tf.string piece (no eos); a blank piece has none."""
    text = tf.convert_to_tensor(text, tf.string)
    return tf.cond(
        tf.strings.length(tf.strings.strip(text)) > 0,
        lambda: tf.cast(vocabulary.encode_tf(text), tf.int32),
        lambda: tf.zeros([0], tf.int32),
    )


def _segments(pieces) -> tuple[Sequence, ...]:
    """A pattern's pieces as one or two segments; exactly one `MASK` among them."""
    segments = pieces if isinstance(pieces, tuple) else (pieces,)
    if len(segments) not in (1, 2) or sum(p is MASK for segment in segments for p in segment) != 1:
        raise ValueError(f"A cloze pattern needs one or two lists of pieces with exactly one MASK; got {pieces}.")
    return segments


def segment_cuts(excess, shortenable: Sequence) -> list:
    """How many tokens `PVP.truncate` removes from each segment to remove `excess` in all, given the
    tokens of each segment's shortenable pieces: one at a time from the segment holding more, the
    second on a tie (in closed form: the longer one down to the other's length, then alternately)."""
    if len(shortenable) == 1:
        return [excess]
    a, b = shortenable
    lead_a = tf.minimum(tf.maximum(a - b, 0), excess)  # a longer: a first, down to b's length
    lead_b = tf.minimum(tf.maximum(b - a + 1, 0), excess)  # b as long: b first, down to a's length - 1
    rest = excess - lead_a - lead_b
    # Then turns alternate, starting with b after a's lead (equal lengths) and with a after b's.
    return [
        lead_a + tf.where(a > b, rest // 2, (rest + 1) // 2),
        lead_b + tf.where(a > b, (rest + 1) // 2, rest // 2),
    ]


class Pattern:
    """A pattern's pieces, tokenized once (its prompt spots filled by `prompts`), and Part A cut to any budget (TF)."""

    def __init__(self, pieces, vocabulary, tokens: CommandTokens, prompts: Prompts = NO_PROMPTS):
        self.description = pieces
        self.segments = []  # per segment: [(ids, shortenable)]
        segments = _segments(pieces)
        counts = iter(spread(prompts.tokens, sum(p is PROMPT for segment in segments for p in segment)))
        placed = prompts.prefix  # prompt tokens so far, the prefix first
        for i, segment in enumerate(segments):
            encoded = [(tf.constant(prompts.ids(0, prompts.prefix), tf.int32), False)] if i == 0 else []
            for p in segment:
                if p is PROMPT:
                    count = next(counts)
                    encoded.append((tf.constant(prompts.ids(placed, count), tf.int32), False))
                    placed += count
                elif p is MASK:
                    encoded.append((tf.constant([tokens.mask], tf.int32), False))
                else:
                    text = p.text if isinstance(p, Shortenable) else p
                    encoded.append((encode_text(text, vocabulary), isinstance(p, Shortenable)))
            self.segments.append(encoded)
        self.tokens = tokens
        self.length = 2 + tf.add_n([tf.size(ids) for segment in self.segments for ids, _ in segment])

    def cut(self, budget) -> tf.Tensor:
        """`[CLS] pieces [eos]` ids cut to at most `budget` tokens as `PVP.truncate` cuts them; an example
        that does not fit with every shortenable piece emptied is an error."""
        shortenable = [tf.add_n([tf.size(ids) for ids, s in seg if s] or [tf.constant(0)]) for seg in self.segments]
        cuts = segment_cuts(tf.maximum(self.length - budget, 0), shortenable)
        out, checks = [], []
        for segment, remaining in zip(self.segments, cuts, strict=True):
            pieces = list(segment)
            for i in reversed(range(len(pieces))):  # the last shortenable piece first
                ids, cuttable = pieces[i]
                if cuttable:
                    cut = tf.minimum(tf.size(ids), remaining)
                    pieces[i] = (ids[: tf.size(ids) - cut], cuttable)
                    remaining -= cut
            message = f"cloze example longer than its budget even with shortenable pieces cut ({self.description})"
            checks.append(tf.debugging.assert_equal(remaining, 0, message=message))
            out += [ids for ids, _ in pieces]
        with tf.control_dependencies(checks):
            return tf.concat([[self.tokens.cls], *out, [self.tokens.eos]], 0)


def part_a(pieces, vocabulary, tokens: CommandTokens, budget, prompts: Prompts = NO_PROMPTS):
    """(`[CLS] pieces [eos]` ids cut to at most `budget` tokens, 1 if something was cut)."""
    pattern = Pattern(pieces, vocabulary, tokens, prompts)
    return pattern.cut(budget), tf.cast(pattern.length > budget, tf.int32)


def layouts(pattern: Pattern, answer_lengths: tf.Tensor, seq_len: int):
    """(Part A layouts as a ragged `[P, None]`, the layout of each answer `[C]`, 1 if any was cut).

    Each answer of n tokens gets Part A cut to `seq_len - n` tokens; answers that need the same cut
    share a layout. Layout 0 is the longest.
    """
    fits = tf.minimum(pattern.length, seq_len - tf.maximum(answer_lengths, 1))  # Part A length per answer
    distinct = tf.unique(tf.sort(fits, direction="DESCENDING")).y
    which = tf.argmax(tf.cast(tf.equal(fits[:, None], distinct[None, :]), tf.int32), axis=1, output_type=tf.int32)
    spec = tf.RaggedTensorSpec([None], tf.int32, ragged_rank=0)
    ids = tf.map_fn(pattern.cut, distinct, fn_output_signature=spec)
    return ids, which, tf.cast(tf.reduce_any(fits < pattern.length), tf.int32)


def _answers(cloze: Cloze, ex: dict, vocabulary, tokens: CommandTokens, verbalizer: list[int]):
    """(choice_ids [C, T], choice_lengths [C], choice_texts [C]) of one example."""
    if cloze.single_token:
        ids = tf.constant(verbalizer, tf.int32)[:, None]
        return ids, tf.ones([len(verbalizer)], tf.int32), tf.constant(list(cloze.verbalizer))
    texts = tf.reshape(cloze.candidates(ex), [-1])
    spec = tf.RaggedTensorSpec([None], tf.int32, ragged_rank=0)
    ragged = tf.map_fn(lambda t: encode_text(t, vocabulary), texts, fn_output_signature=spec)
    eop = tf.fill([tf.shape(texts)[0], 1], tokens.eop)
    ids = tf.concat([ragged, tf.RaggedTensor.from_tensor(eop)], axis=1)
    return ids.to_tensor(), tf.cast(ids.row_lengths(), tf.int32), texts


def to_questions(
    dataset, sequence_length, *, cloze: Cloze, vocabulary: seqio.Vocabulary, prompts: Prompts = NO_PROMPTS
):
    """SeqIO preprocessor: source examples → cloze questions (the fields of the module docstring)."""
    seq_len = sequence_length["inputs"]
    tokens = vocab.command_tokens(vocabulary)
    verbalizer = verbalizer_ids(cloze.verbalizer, vocabulary) if cloze.single_token else []

    @tf.autograph.experimental.do_not_convert  # plain TF ops: nothing for autograph to rewrite
    def convert(ex):
        choice_ids, lengths, texts = _answers(cloze, ex, vocabulary, tokens, verbalizer)
        pattern = Pattern(cloze.pattern(ex), vocabulary, tokens, prompts)
        part_as, which, truncated = layouts(pattern, lengths, seq_len)
        empty = tf.zeros([0], tf.string)
        return {
            "inputs": part_as.flat_values,
            "part_a_lengths": tf.cast(part_as.row_lengths(), tf.int32),
            "choice_ids": choice_ids,
            "choice_lengths": lengths,
            "choice_part_a": which,
            "label": tf.cast(cloze.label(ex), tf.int32),
            "group": tf.cast(cloze.group(ex), tf.int64) if cloze.group else tf.constant(-1, tf.int64),
            "truncated": truncated,
            "choice_texts": texts,
            "answers": tf.reshape(cloze.answers(ex), [-1]) if cloze.answers else empty,
        }

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


_RANKS = {"inputs": 1, "part_a_lengths": 1, "choice_ids": 2, "choice_lengths": 1, "choice_part_a": 1, "label": 0,
          "group": 0, "truncated": 0}  # fmt: skip


def register_cloze_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: seqio.Vocabulary,
    cloze: Cloze,
    *,
    preprocessors: Sequence = (),
    shuffle_buffer_size: int = 10_000,
    prompts: Prompts = NO_PROMPTS,
) -> seqio.Task:
    """Registers (or replaces) task `name`: the examples of `source`, after `preprocessors` (source
    specific, e.g. renaming fields), as cloze questions of `cloze` in `vocabulary`, with the continuous
    prompt tokens `prompts` (`glm_jax.downstream.prompts.with_prompts` registers it again with others).

    Example (a sentiment jsonl with `text` and `label` 0/1):

        register_cloze_task("my_sentiment", sources_lib.jsonl_examples({...}), vocabulary,
                            Cloze(lambda ex: [shortenable(ex["text"]), " It was", MASK, "."],
                                  verbalizer=("bad", "good")))
    """
    if cloze.single_token:
        verbalizer_ids(cloze.verbalizer, vocabulary)  # fail at registration, not inside the pipeline
    tasks.remove_if_registered(seqio.TaskRegistry, name)
    again = dict(preprocessors=preprocessors, shuffle_buffer_size=shuffle_buffer_size)
    prompts_lib.remember(name, functools.partial(register_cloze_task, name, source, vocabulary, cloze, **again))
    _CLOZES[name] = cloze
    ids = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(vocabulary.vocab_size), add_eos=False)
    features = {key: ids(rank=rank, dtype=tf.int64 if key == "group" else tf.int32) for key, rank in _RANKS.items()}
    features["inputs"] = seqio.Feature(vocabulary, add_eos=False)
    text = functools.partial(seqio.Feature, seqio.PassThroughVocabulary(0), add_eos=False, dtype=tf.string)
    features.update(choice_texts=text(rank=1), answers=text(rank=1))
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[
            *preprocessors,
            functools.partial(to_questions, cloze=cloze, vocabulary=vocabulary, prompts=prompts),
        ],
        output_features=features,
        shuffle_buffer_size=shuffle_buffer_size,
    )


_CLOZES: dict[str, Cloze] = {}  # by task name, for prompt.init's task tokens


def task_tokens(name: str, vocabulary: seqio.Vocabulary) -> list[int]:
    """The verbalizer's token ids of cloze task `name`, which prompt.init mixes into the prompt spell (the official
    task tokens); none for a task of candidate answers."""
    cloze = _CLOZES.get(name)
    return verbalizer_ids(cloze.verbalizer, vocabulary) if cloze and cloze.single_token else []


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Static batch shapes of a cloze task: Part A slots, answers per question, tokens per answer.
    A question has at most one Part A layout per answer, so `choices` layouts of `part_a` slots."""

    part_a: int
    choices: int
    answer_len: int


def pad_question(ex: dict, shapes: Shapes) -> dict:
    """One question padded to `shapes` (TF): `inputs` and `segment_ids` `[choices, part_a]` (a row per
    layout, then empty rows); more answers or longer ones than `shapes` holds is an error."""
    c, t = tf.shape(ex["choice_ids"])[0], tf.shape(ex["choice_ids"])[1]
    checks = [
        tf.debugging.assert_less_equal(
            c, shapes.choices, message=f"a question has more answers than finetune.max_choices={shapes.choices}"
        ),
        tf.debugging.assert_less_equal(
            t, shapes.answer_len, message=f"an answer is longer than finetune.answer_len={shapes.answer_len} tokens"
        ),
    ]
    with tf.control_dependencies(checks):
        part_as = tf.RaggedTensor.from_row_lengths(ex["inputs"], ex["part_a_lengths"])
        square = [shapes.choices, shapes.part_a]
        out = {
            "inputs": part_as.to_tensor(shape=square),
            "segment_ids": tf.ones_like(part_as).to_tensor(shape=square),
            "choice_ids": tf.pad(ex["choice_ids"], [[0, shapes.choices - c], [0, shapes.answer_len - t]]),
            "choice_lengths": tf.pad(ex["choice_lengths"], [[0, shapes.choices - c]]),
            "choice_part_a": tf.pad(ex["choice_part_a"], [[0, shapes.choices - c]]),
            "choice_texts": tf.pad(ex["choice_texts"], [[0, shapes.choices - c]]),
        }
    for key in ("label", "group", "truncated"):
        out[key] = ex[key]
    out["answers"] = ex["answers"]
    return out


def padded_shapes(shapes: Shapes) -> dict:
    return {
        "inputs": [shapes.choices, shapes.part_a],
        "segment_ids": [shapes.choices, shapes.part_a],
        "choice_ids": [shapes.choices, shapes.answer_len],
        "choice_lengths": [shapes.choices],
        "choice_part_a": [shapes.choices],
        "choice_texts": [shapes.choices],
        "label": [],
        "group": [],
        "truncated": [],
        "answers": [None],
    }


DEVICE_FIELDS = ("inputs", "segment_ids", "choice_ids", "choice_lengths", "choice_part_a", "label")


def layouts_used(batch: dict) -> int:
    """The most Part A layouts a question of a host batch uses, rounded up to a power of two (so that
    few batch shapes are compiled), at most the layouts the batch holds."""
    used = np.where(batch["choice_lengths"] > 0, batch["choice_part_a"] + 1, 1).max(initial=1)
    return min(1 << (int(used) - 1).bit_length(), batch["inputs"].shape[1])


def keep_layouts(batch: dict, layouts: int) -> dict:
    """`batch` with its first `layouts` Part A layouts only (`layouts_used` or more)."""
    return batch | {k: batch[k][:, :layouts] for k in ("inputs", "segment_ids")}


def empty_rows(batch: dict, rows: int) -> dict:
    """`batch` (host arrays) padded with `rows` questions that score nothing (label -1, no answers)."""
    out = {}
    for k, v in batch.items():
        out[k] = np.concatenate([v, np.zeros((rows, *v.shape[1:]), v.dtype)]) if rows else v
    if rows:
        out["label"][-rows:] = -1
    return out
