"""The official fine-tuning recipes of the SuperGLUE tasks (`config_tasks/task_*.sh`) and the configs they give."""

import dataclasses

from glm_jax import config as config_lib

TASKS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
RECORD_TRAIN_CANDIDATES = 10  # the official max_train_candidates_per_question


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Official fine-tuning settings of a task, and the static answer shapes of its batches.

    All tasks also use linear decay, warmup 0.1 of the steps and weight decay 0.1 (`TRAIN_ARGS`).
    """

    seq_len: int
    batch_size: int
    epochs: int
    pattern_id: int
    max_choices: int  # answers per question (the most of any question of any split)
    answer_len: int  # tokens per answer including eop; 1 for single-token verbalizers
    lr: float = 1e-5
    max_train_choices: int = 0  # answers per training question, if fewer (0: max_choices)
    length_penalty: float = 0.0
    loss: str = "ce"


# From `config_tasks/task_{name}.sh` (MAX_SEQ_LEN, BATCH_SIZE, EPOCH_SINGLE, LR_SINGLE, --pattern-id, and for WSC
# --loss-func mix --length-penalty 1) as `scripts/finetune_superglue.sh` runs them: BATCH_SIZE is the global batch
# and overrides MultiRC's `--batch-size 16`; the 10B model's script uses XXLARGE_EPOCH instead (BoolQ 24, CB 100,
# COPA 100, MultiRC 12, ReCoRD 3, RTE 50, WiC 40, WSC 100).
# max_choices and answer_len: the number of labels for verbalizers (answer_len 1, their token). The multi-token
# bounds could not be measured here (no SuperGLUE data offline); they are generous guesses, and a question beyond
# them fails loudly in `cloze.pad_question`. Measure the real data with `measure(...)`: COPA's choices are short
# sentences; ReCoRD's train questions have at most RECORD_TRAIN_CANDIDATES answers but evaluation takes every
# entity of the passage; WSC holds the distinct span1 texts of a sentence (the official train chunks are 1 + 9).
SUPERGLUE_RECIPES = {
    "boolq": Recipe(seq_len=256, batch_size=16, epochs=20, pattern_id=4, max_choices=2, answer_len=1),
    "cb": Recipe(seq_len=256, batch_size=16, epochs=50, pattern_id=3, max_choices=3, answer_len=1),
    "copa": Recipe(seq_len=256, batch_size=16, epochs=50, pattern_id=0, max_choices=2, answer_len=32),
    "multirc": Recipe(seq_len=512, batch_size=64, epochs=15, pattern_id=0, max_choices=2, answer_len=1),
    "record": Recipe(
        seq_len=512,
        batch_size=64,
        epochs=5,
        pattern_id=0,
        max_choices=64,
        answer_len=16,
        max_train_choices=RECORD_TRAIN_CANDIDATES,
    ),
    "rte": Recipe(seq_len=256, batch_size=16, epochs=50, pattern_id=0, max_choices=2, answer_len=1),
    "wic": Recipe(seq_len=256, batch_size=16, epochs=30, pattern_id=1, max_choices=2, answer_len=1),
    "wsc": Recipe(
        seq_len=128,
        batch_size=16,
        epochs=50,
        pattern_id=2,
        max_choices=10,
        answer_len=16,
        length_penalty=1.0,
        loss="mix",
    ),
}


def recipe_config(task: str):
    """The fine-tuning config of SuperGLUE `task`: the official recipe over `config.finetune_defaults()`."""
    if task not in SUPERGLUE_RECIPES:
        raise ValueError(f"Unknown SuperGLUE task {task!r}; known: {', '.join(TASKS)}.")
    r = SUPERGLUE_RECIPES[task]
    c = config_lib.finetune_defaults()
    c.finetune.update(
        superglue=task, metric=task, epochs=r.epochs, pattern_id=r.pattern_id, max_choices=r.max_choices,
        max_train_choices=r.max_train_choices,
        answer_len=r.answer_len, length_penalty=r.length_penalty, loss=r.loss,
    )  # fmt: skip
    c.data.update(seq_len=r.seq_len, batch_size=r.batch_size)
    c.optimizer.peak_lr = r.lr
    return c
