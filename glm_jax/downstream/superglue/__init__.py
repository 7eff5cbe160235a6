"""The eight SuperGLUE tasks as cloze questions, with the patterns and verbalizers of the official GLM code
(`tasks/superglue/pvp.py`, the data handling of `tasks/superglue/dataset.py`) and its fine-tuning recipes.

- `register(task, vocabulary, source=..., pattern_id=...)`: SeqIO task `superglue_{task}` of cloze questions
  (fields: `cloze.questions`); `make_cloze` gives its `cloze.Cloze` alone.
- `examples(task, source)`: the task's examples with the TFDS features, splits "train", "validation", "test",
  from "tfds" (the builders `super_glue/{boolq,cb,copa,multirc,record,rte,wic,wsc.fixed}`), "jsonl:DIR" (the
  original release files `DIR/train.jsonl`, `DIR/val.jsonl` and `DIR/test.jsonl` if present, flattened and
  labelled as TFDS does: MultiRC one example per answer option, ReCoRD one per query with entities and answers
  as sorted unique texts) or any `seqio.DataSource` of such examples.
- `SUPERGLUE_RECIPES` and `recipe_config(task)`: the official fine-tuning settings and default pattern of each
  task, `PATTERN_IDS` all patterns; `measure` finds a split's largest answer shapes.

Files: `recipes` (settings), `text` (text helpers), `patterns` (the official patterns and verbalizers: hold it
against `pvp.py`), `jsonl` (the original files), `splits` (split-specific examples), `tasks` (the table of
tasks, sources and registration).

As the official code, texts have their curly quotes and en dashes made plain (`punctuation_standardization`,
not for COPA), and the train split differs from the others:

- COPA: each example also comes mirrored (choices swapped, label flipped);
- ReCoRD: one question per gold answer, its candidates that answer, then the other entities in sorted order,
  or 9 of them drawn at random where there are more; elsewhere one question per query over all entities
  (made plain, deduplicated, then sorted), label the first gold among them, `answers` all golds;
- WSC: only the examples whose label is True.

WSC's negative candidates are the other span1 texts the split pairs with the same text and pronoun: the
dataset repeats each sentence with different candidate referents. Label 0 is always the example's own span1;
`group` holds its original label (1 True, 0 False, -1 unknown), so that an evaluation predicts True iff
candidate 0 scores best.

What still differs from the official code, and why, is listed in docs/official_differences.md.
"""

from glm_jax.downstream.superglue.recipes import SUPERGLUE_RECIPES, TASKS, recipe_config
from glm_jax.downstream.superglue.splits import wsc_examples
from glm_jax.downstream.superglue.tasks import PATTERN_IDS, examples, make_cloze, measure, register
from glm_jax.downstream.superglue.text import sort_strings

__all__ = [
    "PATTERN_IDS",
    "SUPERGLUE_RECIPES",
    "TASKS",
    "examples",
    "make_cloze",
    "measure",
    "recipe_config",
    "register",
    "sort_strings",
    "wsc_examples",
]
