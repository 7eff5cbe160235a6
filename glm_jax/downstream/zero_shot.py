"""Zero-shot evaluation (paper §3.3): language-model perplexity and LAMBADA-style last-word accuracy.

Every example is one row of the data contract (`glm_jax/contract.py`) holding one Part B span, laid out as the
official GLM code lays out its language-modeling examples (`tasks/language_model`):

    inputs    [CLS] a1 .. aN [MASK] sop b1 .. b(M-1)
    targets    0    0  ..  0   0    b1  b2 .. bM
    span_ids   0    0  ..  0   0    1   1  ..  1

Part A (`a`) is bidirectional; Part B (`b`) is causal and sees all of Part A; no `eop` is scored.
The paper's two settings differ only in where the context goes:

- bidirectional: Part A is the context, Part B the tokens to score;
- unidirectional: Part A is the first context token only, Part B the rest of the context and then
  the tokens to score (only these are weighted), so each token sees just what precedes it, as in GPT.

Both settings are plain contract rows, so the model and its layout need no change. A left-to-right
model (GPT, `model.causal`) has one setting only, unidirectional, in its own rows: the tokens as they
are (no [CLS], no blank), each predicting the next (`left_to_right_row`); the same tokens are scored.
Texts come from a SeqIO task (`register_text_task`) over any source of documents.
"""

import functools
import math
import re
from collections.abc import Iterable, Iterator, Sequence

import jax
import numpy as np
import seqio

from glm_jax.contract import CommandTokens
from glm_jax.data import tasks
from glm_jax.training import losses, sharding

SETTINGS = ("bidirectional", "unidirectional")
BLANKS = ("mask", "gmask")  # the Part A marker before the span: [MASK] (official) or [gMASK]
FIELDS = ("inputs", "targets", "loss_weights", "segment_ids", "span_ids")


# ---------------------------------------------------------------------------------------------
# Texts from SeqIO.


def register_text_task(name: str, source: seqio.DataSource, vocabulary: seqio.Vocabulary, text_key="text"):
    """Registers (or replaces) task `name`: each document of `source[text_key]`, tokenized whole.

    Its examples are `{'targets': int32 ids (no eos), 'targets_pretokenized': the text}`.
    """
    tasks.remove_if_registered(seqio.TaskRegistry, name)
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": text_key}),
            functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=True),
        ],
        output_features={"targets": seqio.Feature(vocabulary, add_eos=False)},
    )


def read_documents(task: str, split: str, max_documents: int = 0) -> list[tuple[str, list[int]]]:
    """(text, token ids) of the documents of `split` of text task `task`, in source order (the first
    `max_documents` if > 0)."""
    ds = seqio.get_mixture_or_task(task).get_dataset(None, split=split, shuffle=False, num_epochs=1)
    documents = []
    for example in ds.as_numpy_iterator():
        documents.append((example["targets_pretokenized"].decode("utf-8"), example["targets"].tolist()))
        if max_documents and len(documents) == max_documents:
            break
    return documents


# ---------------------------------------------------------------------------------------------
# Examples as contract rows.


def lm_windows(document: Sequence[int], window: int, stride: int) -> list[tuple[list[int], list[int]]]:
    """(context, scored) token lists of the overlapping windows over one document.

    Window k covers `document[k * stride : k * stride + window]`. The first scores all its tokens but
    the document's first (its only context); each later one scores the tokens past the end of the
    one before, after a context of the `window - stride` tokens preceding them. So every token but
    the first is scored exactly once, as in the official `LMDataset` (`--overlapping-eval stride`).
    """
    if not 1 <= stride < window:
        raise ValueError(f"stride={stride} must be in [1, window - 1] (window={window}).")
    document = list(document)
    if len(document) < 2:
        return []
    windows = [(document[:1], document[1:window])]
    context = window - stride
    for k in range(1, 1 + math.ceil(max(len(document) - window, 0) / stride)):
        start = k * stride
        windows.append((document[start : start + context], document[start + context : start + window]))
    return windows


def split_example(context: Sequence[int], scored: Sequence[int], setting: str) -> tuple[list[int], list[int]]:
    """(Part A text, Part B span) of one example in `setting`; the last `len(scored)` span tokens are scored."""
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r} is not one of {SETTINGS}.")
    if not context or not scored:
        raise ValueError("An example needs at least one context token and one token to score.")
    if setting == "bidirectional":
        return list(context), list(scored)
    return list(context[:1]), list(context[1:]) + list(scored)


def example_row(part_a, span, num_scored: int, tokens: CommandTokens, length: int, blank: str = "mask") -> dict:
    """One contract row `[CLS] part_a [blank] | sop span[:-1]` (targets `span`), padded to `length`.

    Only the last `num_scored` targets get loss weight 1.
    """
    if blank not in BLANKS:
        raise ValueError(f"blank={blank!r} is not one of {BLANKS}.")
    a = [tokens.cls, *part_a, getattr(tokens, blank)]
    size = len(a) + len(span)
    if size > length:
        raise ValueError(f"Example of {size} tokens does not fit a row of {length}.")
    row = {name: np.zeros(length, np.int32) for name in FIELDS}
    row["inputs"][:size] = a + [tokens.sop, *span[:-1]]
    row["targets"][len(a) : size] = span
    row["loss_weights"][size - num_scored : size] = 1
    row["segment_ids"][:size] = 1
    row["span_ids"][len(a) : size] = 1
    return row


def left_to_right_row(context, scored, length: int) -> dict:
    """One row of a left-to-right model: inputs `context + scored[:-1]`, each predicting the next token,
    all Part A (its layout makes the row causal); only the `scored` targets weigh. Padded to `length`."""
    tokens = [*context, *scored]
    size = len(tokens) - 1
    if size > length:
        raise ValueError(f"Example of {size} tokens does not fit a row of {length}.")
    row = {name: np.zeros(length, np.int32) for name in FIELDS}
    row["inputs"][:size] = tokens[:-1]
    row["targets"][:size] = tokens[1:]
    row["loss_weights"][size - len(scored) : size] = 1
    row["segment_ids"][:size] = 1
    return row


def _row(context, scored, *, setting, tokens, length, blank, causal) -> dict:
    if causal:
        if setting != "unidirectional":
            raise ValueError(f"A left-to-right model has the unidirectional setting only, not {setting!r}.")
        return left_to_right_row(context, scored, length)
    part_a, span = split_example(context, scored, setting)
    return example_row(part_a, span, len(scored), tokens, length, blank)


def lm_rows(documents, *, setting, window, stride, tokens, blank="mask", causal=False) -> Iterator[dict]:
    """Rows of `window + 2` tokens scoring every token of each document but its first, once."""
    for document in documents:
        for context, scored in lm_windows(document, window, stride):
            yield _row(context, scored, setting=setting, tokens=tokens, length=window + 2, blank=blank, causal=causal)


def last_word_example(text: str, vocabulary: seqio.Vocabulary, min_words: int = 1):
    """(context ids, word ids) of a passage's last word, or None if it has none or too short a context.

    The word is the passage's last whitespace-delimited word once trailing characters that are not
    letters, digits or `_` are removed (LAMBADA passages end in the word itself, so for them nothing is
    removed); the context is the text before it, of at least `min_words` words. The word's tokens are
    those that the vocabulary's encoding of `context + ' ' + word` adds to the encoding of the context;
    a passage where the context's encoding is not a prefix of it yields None.
    """
    text = re.sub(r"\W+$", "", text.strip())
    parts = text.rsplit(None, 1)
    if len(parts) != 2 or len(parts[0].split()) < min_words:
        return None
    context_text, word = parts
    context = list(vocabulary.encode(context_text))
    full = list(vocabulary.encode(f"{context_text} {word}"))
    if not context or len(full) <= len(context) or full[: len(context)] != context:
        return None
    return context, full[len(context) :]


def passages(text: str) -> list[str]:
    """The paragraphs (separated by blank lines) of a document; a LAMBADA passage is one paragraph."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def lambada_examples(texts: Iterable[str], vocabulary: seqio.Vocabulary, min_words: int = 1) -> list:
    """(context ids, word ids) of the last word of every paragraph of `texts` that has one (see
    `last_word_example`)."""
    examples = (last_word_example(p, vocabulary, min_words) for text in texts for p in passages(text))
    return [e for e in examples if e is not None]


def lambada_rows(examples, *, setting, length, tokens, blank="mask", causal=False) -> Iterator[dict]:
    """One row per (context, word) example, the word scored; contexts cut on the left to fit `length`
    (by as much for a left-to-right model, whose rows need fewer tokens, so that both see the same)."""
    for context, word in examples:
        room = length - len(word) - 3  # [CLS], the blank marker and sop
        if room < 1:
            raise ValueError(f"A word of {len(word)} tokens leaves no room for context in a row of {length}.")
        yield _row(context[-room:], word, setting=setting, tokens=tokens, length=length, blank=blank, causal=causal)


# ---------------------------------------------------------------------------------------------
# Scoring.


class ZeroShotScorer:
    """Sums of per-row scores of contract rows, by a jitted forward on a trainer's mesh."""

    def __init__(self, trainer, batch_size: int):
        self.trainer = trainer
        mesh = trainer.mesh
        rows_split = sharding.batch_shards(mesh)
        self.batch_size = -(-batch_size // rows_split) * rows_split  # a multiple of the devices rows split over

        def row_sums(params, batch):
            logits = trainer.model.apply({"params": params}, batch)
            return jax.vmap(losses.scored_sums)(logits, batch)

        self._row_sums = jax.jit(
            row_sums,
            in_shardings=(trainer.state_shardings.params, trainer.batch_sharding),
            out_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
        )

    def row_sums(self, params, rows: Iterable[dict]) -> dict:
        """Per-row `loss_sum`, `correct_sum`, `weight_sum` (`losses.scored_sums`) of `rows`, as numpy arrays."""
        parts, batch = [], []
        for row in rows:
            batch.append(row)
            if len(batch) == self.batch_size:
                parts.append(self._score(params, batch))
                batch = []
        if batch:
            parts.append(self._score(params, batch))
        if not parts:
            raise ValueError("Nothing to score: no examples.")
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _score(self, params, rows):
        stacked = {k: np.stack([r[k] for r in rows]) for k in FIELDS}
        missing = self.batch_size - len(rows)
        stacked = {k: np.pad(v, ((0, missing), (0, 0))) for k, v in stacked.items()}
        with self.trainer.partitioning():
            sums = self._row_sums(params, self.trainer.put_batch(stacked))
        return {k: np.asarray(v, np.float64)[: len(rows)] for k, v in sums.items()}


def perplexity(scorer: ZeroShotScorer, params, documents, *, setting, window, stride, tokens, blank="mask",
               causal=False) -> dict:  # fmt: skip
    """Mean negative log-likelihood (nats) per scored token and its exponential, over token-id documents."""
    rows = lm_rows(documents, setting=setting, window=window, stride=stride, tokens=tokens, blank=blank, causal=causal)
    sums = scorer.row_sums(params, rows)
    count = float(sums["weight_sum"].sum())
    if count == 0:
        raise ValueError("Nothing to score: every document has fewer than 2 tokens.")
    nll = float(sums["loss_sum"].sum()) / count
    return {"nll": nll, "perplexity": math.exp(nll), "tokens": int(count), "windows": len(sums["weight_sum"])}


def lambada_accuracy(scorer: ZeroShotScorer, params, examples, *, setting, length, tokens, blank="mask",
                     causal=False) -> dict:  # fmt: skip
    """Share of words whose every token is the argmax (teacher-forced), with word and token counts."""
    rows = lambada_rows(examples, setting=setting, length=length, tokens=tokens, blank=blank, causal=causal)
    sums = scorer.row_sums(params, rows)
    correct = int(np.sum(sums["correct_sum"] == sums["weight_sum"]))
    words = len(sums["weight_sum"])
    return {
        "accuracy": correct / words,
        "correct": correct,
        "words": words,
        "token_accuracy": float(sums["correct_sum"].sum() / sums["weight_sum"].sum()),
        "nll_per_word": float(sums["loss_sum"].sum()) / words,
    }
