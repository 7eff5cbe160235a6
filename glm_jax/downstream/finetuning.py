"""What `glm_jax.finetune` does for every kind of downstream task: the config from the `--init`
workdir, its checks, and the task's side (`kind`): cloze (`cloze_finetuning`) or seq2seq.

The model's shape and vocabulary come from the `--init` workdir (pretrained or converted); only
its parameters are restored. The train step is `Trainer`'s (same mesh, shardings, microbatches,
Orbax state and data position) with the task's objective; each kind provides its data streams
and its evaluation (scores and one prediction record per example).
"""

import json
import math

import jax
import ml_collections
import seqio
from etils import epath

from glm_jax.downstream import cloze_finetuning, seq2seq_finetuning
from glm_jax.training import workdir as workdir_lib

# Model keys that fix the parameters: they come from the --init workdir.
SHAPE_KEYS = ("vocab_size", "num_layers", "hidden", "heads", "mlp_ratio", "max_len", "scan_layers")
# The data keys that name the model's vocabulary.
VOCABULARY_KEYS = ("task", "task_module", "vocabulary")
KINDS = {"cloze": cloze_finetuning, "seq2seq": seq2seq_finetuning}


def config_from_init(c: ml_collections.ConfigDict, init: str) -> ml_collections.ConfigDict:
    """`c` with the model shape and vocabulary of the workdir `init` (its config.json)."""
    base = workdir_lib.read_config(workdir_lib.absolute(init))
    c = ml_collections.ConfigDict(c.to_dict())
    for key in SHAPE_KEYS:
        c.model[key] = base.model[key]
    c.model.max_len = base.model.max_len or base.data.seq_len
    for key in VOCABULARY_KEYS:
        c.data[key] = base.data[key]
    return c


def check(c: ml_collections.ConfigDict) -> None:
    """Rejects impossible fine-tuning settings, naming the key."""
    f = c.finetune
    if f.kind not in KINDS:
        raise ValueError(f"Invalid config: finetune.kind must be one of {tuple(KINDS)}.")
    checks = [
        (f.epochs >= 0, "finetune.epochs must be >= 0 (0: evaluate --init without training)"),
        (f.eval_every_epochs > 0, "finetune.eval_every_epochs must be > 0"),
        (f.answer_len > 0, "finetune.answer_len must be > 0"),
        (f.length_penalty >= 0, "finetune.length_penalty must be >= 0"),
        (c.data.seq_len <= c.model.max_len, f"data.seq_len must be <= the model's max_len {c.model.max_len}"),
        (f.answer_len < c.data.seq_len, "finetune.answer_len must be < data.seq_len"),
        *KINDS[f.kind].check(c),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"Invalid config: {message}.")


def downstream(c: ml_collections.ConfigDict, vocabulary: seqio.Vocabulary):
    """The task side of fine-tuning config `c` (its task registered in `vocabulary`)."""
    if c.finetune.kind == "seq2seq":
        return seq2seq_finetuning.Seq2SeqFinetuning(c, vocabulary)
    return cloze_finetuning.ClozeFinetuning(c, vocabulary)


def shard_info() -> seqio.ShardInfo | None:
    """This process's shard of the training data; None in a single process (whose source then need not
    list its files, as a mocked TFDS builder cannot)."""
    if jax.process_count() == 1:
        return None
    return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def write_predictions(path: epath.Path, records: list[dict]) -> None:
    if jax.process_index() == 0:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
