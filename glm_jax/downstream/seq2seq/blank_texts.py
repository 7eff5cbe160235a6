"""The texts of text infilling (`finetune.seq2seq=blank`) and their blank task at a ratio (`register`).

`finetune.source` names them:

- "demo": the default corpus's docstrings (`glm_jax/downstream/demos/infill.py`), offline;
- "jsonl:DIR": `DIR/train.jsonl`, `DIR/validation.jsonl` and `DIR/test.jsonl` if present, the text under the
  key `finetune.text_key` of each line's object;
- "tfds:BUILDER": a TFDS dataset's feature `finetune.text_key`, in the builder's own splits;
- "blank_lm:DIR": the Yahoo Answers files of the official Table 5 (those of the blank language model release):
  `DIR/train.txt`, `DIR/valid.txt` (our "validation") and `DIR/test.txt`, one text a line, `_UNK` read as the
  vocabulary's unknown token (the official `blanklm_detokenize`).
"""

import os

import seqio
import tensorflow as tf

from glm_jax.data import sources
from glm_jax.downstream.seq2seq import blanks, datasets

TASK = "seq2seq_blank"
BLANK_LM_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
_SOURCES = "'demo', 'jsonl:DIR', 'tfds:BUILDER' or 'blank_lm:DIR'"


def _text_feature(text_key: str, builder: str):
    def text(ex):
        if text_key not in ex:
            raise ValueError(f"finetune.text_key={text_key!r} is not a feature of {builder}; it has {sorted(ex)}.")
        return {"text": ex[text_key]}

    return lambda ds: ds.map(text, num_parallel_calls=tf.data.AUTOTUNE)


def _blank_lm_line(line):
    """The official `blanklm_detokenize` of a stripped line: `_UNK` → `[UNK]`."""
    return {"text": tf.strings.regex_replace(tf.strings.strip(line), "_UNK", datasets.UNKNOWN)}


def texts(source: str, text_key: str = "text") -> tuple[seqio.DataSource, list, str]:
    """(SeqIO source, preprocessors that leave each example's text under "text", the text read as the unknown
    token or "") of `source` (module docstring)."""
    kind, _, where = source.partition(":")
    if source == "demo":
        from glm_jax.downstream.demos import infill  # the demo's corpus, only when asked for

        return infill.source(), [], ""
    if kind == "jsonl" and where:
        paths = {split: os.path.join(where, f"{split}.jsonl") for split in datasets.SPLITS}
        return sources.jsonl_files(datasets.split_files(paths, f"finetune.source={source!r}"), text_key), [], ""
    if kind == "tfds" and where:
        return seqio.TfdsDataSource(tfds_name=where), [_text_feature(text_key, where)], ""
    if kind == "blank_lm" and where:
        paths = {split: os.path.join(where, name) for split, name in BLANK_LM_FILES.items()}
        lines = seqio.TextLineDataSource(datasets.split_files(paths, f"finetune.source={source!r}"))
        return lines, [lambda ds: ds.map(_blank_lm_line, num_parallel_calls=tf.data.AUTOTUNE)], datasets.UNKNOWN
    raise ValueError(f"finetune.source={source!r} does not name texts to blank: use {_SOURCES}.")


def register(vocabulary, source: str, *, ratio: float, source_len: int, target_len: int, text_key: str = "text",
             name: str = TASK) -> str:  # fmt: skip
    """Registers (or replaces) task `name`, the texts of `source` with `ratio` of their words blanked
    (`blanks.register_blank_task`); returns the name."""
    data, preprocessors, unknown = texts(source, text_key)
    blanks.register_blank_task(
        name, data, vocabulary, ratio=ratio, source_len=source_len, target_len=target_len, unknown=unknown,
        preprocessors=preprocessors,
    )  # fmt: skip
    return name
