"""Registration of pretraining tasks and mixtures with SeqIO's registries.

`register_pretraining_task` is the one call that turns any SeqIO source of documents into a task
emitting blank-infilling examples of the data contract; `register_mixture` mixes tasks (one per
objective) per example at given rates. Importing this module registers the built-in tasks:

| name                      | objectives (rate)                                   | task mask tokens |
|---------------------------|-----------------------------------------------------|------------------|
| glm_default_short_spans   | short spans                                         | no               |
| glm_default_doc           | short spans .5, document .5 (GLM-Doc)               | no               |
| glm_default_sent          | short spans .5, sentence .5 (GLM-Sent)              | no               |
| glm_default_10b           | short spans .5, sentence .3, document .2 (GLM-10B)  | yes              |
| glm_default_noshuffle     | short spans, Part B in text order (GLM - shuffle)   | no               |
| glm_default_sentinel      | short spans, sentinel tokens (GLM + sentinel)       | no               |
| glm_default_masked_lm     | masked LM on short spans (BERT)                     | no               |
| glm_default_lm            | left-to-right LM, rows without [CLS] (GPT)          | no               |

all over the embedded default corpus, and the same for TFDS `c4/en` and `wikipedia` (names
`glm_c4_*` and `glm_wikipedia_*`, read only when used). The last four are the paper's comparisons
(docs/comparisons.md): sentinel tokens need `model.sentinel_positions`, the LM `model.causal`
(`check_model` says so before a run starts).
"""

import functools

import seqio

from glm_jax.data import preprocessors, sources, vocab
from glm_jax.data.objectives import DocumentLevel, LeftToRight, MaskedLM, SentenceLevel, ShortSpans


def remove_if_registered(registry, name) -> None:
    """Lets `name` be registered again (re-registration replaces, as for a re-imported task module)."""
    if name in registry.names():
        registry.remove(name)


def register_pretraining_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: seqio.Vocabulary,
    objective=None,
    *,
    text_key: str = "text",
    add_cls: bool = True,
    short_seq_prob: float = 0.0,
    task_mask: bool = False,
    concatenate: bool = True,
    shuffle_buffer_size: int = 10_000,
) -> seqio.Task:
    """Registers (or replaces) task `name`: `objective` over the documents in `source[text_key]`.

    Args:
      source: any SeqIO source of dicts holding a string document under `text_key` (TFDS,
        text-line files through `sources.text_files`, TFRecords, a function).
      vocabulary: a vocabulary with GLM command tokens (see `vocab`).
      objective: `ShortSpans` (default), `DocumentLevel` or `SentenceLevel` with its options, or a
        baseline's: `MaskedLM` (BERT), `LeftToRight` (GPT; best with `add_cls=False`).
      add_cls: start each row with [CLS].
      short_seq_prob: probability that a row is shorter than full (U{2..full} tokens).
      task_mask: mark document spans with [gMASK] and sentences with [sMASK] (else [MASK]).
      concatenate: join documents into full rows (pretraining); if False each document gets its
        own rows, the last one short (fine-tuning-sized examples, best packed: `data.pack`).
    """
    objective = objective or ShortSpans()
    info = vocab.vocab_info(vocabulary)
    token_ids = seqio.Feature(vocabulary, add_eos=False)
    plain = seqio.Feature(seqio.PassThroughVocabulary(vocabulary.vocab_size), add_eos=False)
    remove_if_registered(seqio.TaskRegistry, name)
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": text_key}),
            functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False),
            seqio.CacheDatasetPlaceholder(),
            functools.partial(
                preprocessors.split_into_rows,
                objective=objective,
                tokens=info.tokens,
                add_cls=add_cls,
                short_seq_prob=short_seq_prob,
                concatenate=concatenate,
            ),
            functools.partial(preprocessors.blank_infilling, objective=objective, info=info, task_mask=task_mask),
        ],
        output_features={"inputs": token_ids, "targets": token_ids, "loss_weights": plain, "span_ids": plain},
        shuffle_buffer_size=shuffle_buffer_size,
    )


def objectives(task: str) -> list:
    """The objective of each task of registered task (or mixture) `task` (None for a task that is not
    a pretraining task of `register_pretraining_task`)."""
    found = []
    for sub in seqio.get_subtasks(seqio.get_mixture_or_task(task)):
        steps = [p for p in sub.preprocessors if getattr(p, "func", None) is preprocessors.blank_infilling]
        found.append(steps[0].keywords["objective"] if len(steps) == 1 else None)
    return found


def max_scored(task: str, seq_len: int, *, pack: bool = False) -> int:
    """The most scored positions a row of `seq_len` of registered task (or mixture) `task` can hold:
    the largest of its objectives' bounds (`max_scored` of each: short spans
    `span_lengths.short_spans_max_scored`), `seq_len` for packed rows and other tasks."""
    if pack:
        return seq_len
    bounds = [seq_len if o is None else o.max_scored(seq_len) for o in objectives(task)]
    return max(bounds, default=seq_len)


def check_model(task: str, causal: bool, sentinel_positions: bool) -> None:
    """Raises ValueError if the model's scheme does not fit the objectives of `task`: a left-to-right
    LM needs `model.causal`, sentinel tokens `model.sentinel_positions`, and the other way round."""
    for objective in objectives(task):
        if objective is None:
            continue
        name = type(objective).__name__
        if objective.causal != causal:
            raise ValueError(
                f"data.task={task!r} has a {name} objective, which needs model.causal={objective.causal} "
                f"(now {causal}): set --config.model.causal={objective.causal}."
            )
        if objective.sentinels != sentinel_positions:
            raise ValueError(
                f"data.task={task!r} has a {name} objective {'with' if objective.sentinels else 'without'} "
                f"sentinel tokens, which needs model.sentinel_positions={objective.sentinels} (now "
                f"{sentinel_positions}): set --config.model.sentinel_positions={objective.sentinels}."
            )


def register_mixture(name: str, tasks_and_rates) -> seqio.Mixture:
    """Registers (or replaces) a mixture drawing each example from one task at the given rates."""
    remove_if_registered(seqio.MixtureRegistry, name)
    return seqio.MixtureRegistry.add(name, list(tasks_and_rates))


PRETRAINING_RECIPES = {
    # recipe: ([(objective suffix, objective, rate)], task mask tokens)
    "short_spans": ([("short_spans", ShortSpans(), 1.0)], False),
    "noshuffle": ([("noshuffle", ShortSpans(shuffle=False), 1.0)], False),
    "sentinel": ([("sentinel", ShortSpans(sentinels=True), 1.0)], False),
    "masked_lm": ([("masked_lm", MaskedLM(), 1.0)], False),
    "lm": ([("lm", LeftToRight(), 1.0)], False),
    "doc": ([("short_spans", ShortSpans(), 0.5), ("document", DocumentLevel(), 0.5)], False),
    "sent": ([("short_spans", ShortSpans(), 0.5), ("sentence", SentenceLevel(), 0.5)], False),
    "10b": (
        [
            ("short_spans", ShortSpans(), 0.5),
            ("sentence", SentenceLevel(), 0.3),
            ("document", DocumentLevel(min_ratio=0.25), 0.2),
        ],
        True,
    ),
}


def register_recipes(prefix: str, source: seqio.DataSource, vocabulary: seqio.Vocabulary, **options) -> None:
    """Registers `{prefix}_{recipe}` for every recipe in `PRETRAINING_RECIPES` (a task, or a mixture of tasks)."""
    for recipe, (parts, task_mask) in PRETRAINING_RECIPES.items():
        rates = []
        for suffix, objective, rate in parts:
            task = f"{prefix}_{suffix}" + ("_tm" if task_mask else "")
            settings = {"add_cls": not isinstance(objective, LeftToRight), "task_mask": task_mask, **options}
            register_pretraining_task(task, source, vocabulary, objective, **settings)
            rates.append((task, rate))
        if len(parts) > 1:
            register_mixture(f"{prefix}_{recipe}", rates)


register_recipes("glm_default", sources.default_corpus_source(), vocab.default_vocabulary())
register_recipes("glm_c4", sources.tfds_source("c4/en:3.1.0"), vocab.default_vocabulary())
register_recipes("glm_wikipedia", sources.tfds_source("wikipedia/20230601.en:1.0.0"), vocab.default_vocabulary())
