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

Files: `layout` (the layout and the task of any source), `datasets` (the four datasets: text processing,
sources, registration), `recipes` (the official settings), `kind` (fine-tuning on such a task).

A task's examples hold the data contract's task fields and two more:

    inputs        int32 [A+B]   Part A, `sop`, the target tokens but the last
    targets       int32 [A+B]   0 over Part A, then the target tokens (and `eop` unless cut)
    loss_weights  int32 [A+B]   1 on the Part B positions
    span_ids      int32 [A+B]   0 in Part A, 1 in Part B
    part_a        int32 [A]     Part A alone, the prompt for decoding
    reference     string []     the target text, for ROUGE / BLEU

Datasets (`register(dataset, ...)`, `DATASETS`; `SEQ2SEQ_RECIPES`, `recipe_config(dataset)`), from TFDS or jsonl files:

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

Text infilling (`BLANK`, the official `--task blank`; `blanks.py`, `blank_texts.py`): a share of a text's words
blanked as the official `BlankLMDataset`, several `[MASK]`s in Part A and their spans in Part B; evaluation fills
them all and scores the whole text with BLEU.

The official `Seq2SeqDataset` also pads Part A with `[PAD]` to `source_len`, every token attending to the
pads: `pad_part_a` adds them to an example (fine-tuning does with `finetune.pad_part_a`, on in the recipes).
What still differs from the official code, and why: docs/official_differences.md.
"""

from glm_jax.downstream.seq2seq.blanks import register_blank_task
from glm_jax.downstream.seq2seq.datasets import (
    UNKNOWN,
    XSUM_MANUAL_FILE,
    dataset_spec,
    examples,
    register,
    register_pairs,
)
from glm_jax.downstream.seq2seq.layout import FIELDS, PROMPT, Seq2Seq, pad_part_a, register_seq2seq_task
from glm_jax.downstream.seq2seq.recipes import BLANK, BLANK_RECIPE, DATASETS, SEQ2SEQ_RECIPES, recipe_config

__all__ = [
    "BLANK",
    "BLANK_RECIPE",
    "DATASETS",
    "FIELDS",
    "PROMPT",
    "SEQ2SEQ_RECIPES",
    "UNKNOWN",
    "XSUM_MANUAL_FILE",
    "Seq2Seq",
    "dataset_spec",
    "examples",
    "pad_part_a",
    "recipe_config",
    "register",
    "register_blank_task",
    "register_pairs",
    "register_seq2seq_task",
]
