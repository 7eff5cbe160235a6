"""Registration of pretraining tasks with `seqio.TaskRegistry`.

`register_pretraining_task` is the one call that turns a source of `{'text': ...}` documents into a
task emitting blank-infilling examples of the data contract. Importing this module registers the
built-in tasks.
"""

import functools

import seqio

from glm_jax.data import preprocessors, sources, vocab

DEFAULT_TASK = "glm_default_short_spans"
_FIELDS = ("inputs", "targets", "loss_weights", "span_ids")


def register_pretraining_task(
    name: str,
    source: seqio.DataSource,
    vocabulary: seqio.SentencePieceVocabulary,
    *,
    mask_ratio: float = 0.15,
    mean_span: float = 3.0,
    shuffle_buffer_size: int = 10_000,
) -> seqio.Task:
    """Registers (or replaces) task `name`: short-span blank infilling over `source`'s 'text'."""
    tokens = vocab.command_tokens(vocabulary)
    options = {"tokens": tokens, "ratio": mask_ratio, "mean_span": mean_span}
    token_ids = seqio.Feature(vocabulary, add_eos=False)
    plain = seqio.Feature(seqio.PassThroughVocabulary(vocabulary.vocab_size), add_eos=False)
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=source,
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False),
            seqio.CacheDatasetPlaceholder(),
            functools.partial(preprocessors.split_into_rows, **options),
            functools.partial(preprocessors.short_span_infilling, **options),
        ],
        output_features={
            "inputs": token_ids,
            "targets": token_ids,
            "loss_weights": plain,
            "span_ids": plain,
        },
        shuffle_buffer_size=shuffle_buffer_size,
    )


register_pretraining_task(DEFAULT_TASK, sources.default_corpus_source(), vocab.default_vocabulary())
