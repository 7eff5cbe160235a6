"""Fine-tuning as a job of the engine's one loop (`training.loop`), for every downstream kind.

`run(c, init, workdir)` is what `python -m glm_jax.finetune` does. The model's shape and
vocabulary come from the `--init` workdir (pretrained or converted), only its parameters are
restored; a *kind* (`KINDS`: cloze, seq2seq) gives the task's data, objective and evaluation. The
loop then gives fine-tuning everything pretraining has: exact resume with the input iterator's
state, the signal stop (exit 75), the non-finite policy, clean save errors and checksummed
checkpoints every `train.checkpoint_every` steps and at each evaluation. After each evaluation
(every `finetune.eval_every_epochs` epochs and at the end) the job writes the predictions and
keeps the parameters of the best evaluations by the task's main metric in `best/` (checksummed; a
damaged one falls back to the next best).
"""

import json
import math

import jax
import ml_collections
import seqio
from etils import epath

from glm_jax import config as config_lib
from glm_jax import console
from glm_jax import workdir as workdir_lib
from glm_jax.downstream.classify import kind as classify_kind
from glm_jax.downstream.cloze import kind as cloze_kind
from glm_jax.downstream.seq2seq import kind as seq2seq_kind
from glm_jax.training import checkpoints, distributed, loop, sharding, workdir_lock

# The data keys that name the model's vocabulary.
VOCABULARY_KEYS = ("task", "task_module", "vocabulary")
KINDS = {"cloze": cloze_kind.ClozeKind, "seq2seq": seq2seq_kind.Seq2SeqKind, "classify": classify_kind.ClassifyKind}


def config_from_init(c: ml_collections.ConfigDict, init: str) -> ml_collections.ConfigDict:
    """`c` with the model shape and vocabulary of the workdir `init` (its config.json)."""
    base = workdir_lib.read_config(workdir_lib.absolute(init))
    c = workdir_lib.with_model_of(c, base, workdir_lib.SHAPE_KEYS + workdir_lib.SCHEME_KEYS)
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
        (f.steps >= 0, "finetune.steps must be >= 0 (0: finetune.epochs epochs)"),
        (f.eval_every_epochs > 0, "finetune.eval_every_epochs must be > 0"),
        (f.answer_len > 0, "finetune.answer_len must be > 0"),
        (f.length_penalty >= 0, "finetune.length_penalty must be >= 0"),
        (c.data.seq_len <= c.model.max_len, f"data.seq_len must be <= the model's max_len {c.model.max_len}"),
        (f.answer_len < c.data.seq_len, "finetune.answer_len must be < data.seq_len"),
        *KINDS[f.kind].checks(c),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"Invalid config: {message}.")


def shard_info() -> seqio.ShardInfo | None:
    """This process's shard of the training data; None in a single process (whose source then need not
    list its files, as a mocked TFDS builder cannot)."""
    if jax.process_count() == 1:
        return None
    return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def write_predictions(path: epath.Path, records: list[dict]) -> None:
    """One JSON object a line, written whole then renamed (a crash never leaves half a file)."""
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)  # a zero-shot evaluation (epochs 0) into a new workdir
        partial = path.parent / (path.name + ".tmp")
        partial.write_text("".join(json.dumps(r) + "\n" for r in records))
        partial.replace(path)


def scores_line(scores: dict) -> str:
    return " | ".join(f"{k} {v:.4f}" for k, v in scores.items())


def start_state(c, trainer, init: str):
    """Step 0: the parameters of `init`'s latest checkpoint (or fresh ones with finetune.from_scratch); those
    the trainer adds to the model's (`new_params`: a classifier head) and LoRA adapters start fresh."""
    if c.finetune.from_scratch:
        console.say(f"initialized at random (seed {c.train.seed}), with the shape and vocabulary of {init}")
        return trainer.init_state(c.train.seed)
    params, step = workdir_lib.stored_params(workdir_lib.absolute(init), trainer.pretrained_params())
    console.say(f"initialized from step {step} of {init}")
    return trainer.state_from_params(params)


class FinetuningJob:
    """The fine-tuning side of the loop (`training.job.Job`) over a kind's task side."""

    checkpoint_at_evaluation = True  # best/ and the predictions follow an evaluation
    evaluate_at_end = True

    def __init__(self, c, init: str, workdir: str, kind):
        self.c, self.init, self.workdir, self.kind = c, init, workdir, kind
        self.trainer = kind.trainer
        self.eval_data = kind.eval_data()
        self.best = checkpoints.best_manager(workdir, kind.main_metric)
        self._scores = {}

    @property
    def base(self) -> dict:
        if self.c.finetune.from_scratch:
            return {"seed": self.c.train.seed}
        return {"workdir": workdir_lib.absolute(self.init)}

    def fresh_state(self):
        return start_state(self.c, self.trainer, self.init)

    def train_stream(self, position: int = 0):
        return self.kind.train_stream(self.c.data.batch_size // jax.process_count(), shard_info(), position)

    def step_flops(self, device_batch) -> float:
        del device_batch  # the static shapes give the count
        return self.kind.step_flops()

    def evaluate(self, step: int, params) -> dict:
        """Scores of `params` on the evaluation data; writes the predictions and prints the scores."""
        self._scores = evaluate(self.c, self.kind, params, self.eval_data, self.workdir, step)
        return {f"eval_{k}": v for k, v in self._scores.items()}

    def after_evaluation(self, step: int, params, scores: dict) -> None:
        del scores  # the task's own names
        params, base = self.trainer.stored_params(params, self.base)  # with frozen parameters, the trainable ones
        checkpoints.save_if_best(self.best, step, params, self._scores, base=base)

    def finish(self, state, log) -> dict:
        """The best evaluation's scores (the last one's if none was kept)."""
        del state, log
        checkpoints.finish(self.best)
        kept = checkpoints.restore_best(self.best, self.trainer.abstract_stored.params, self.kind.main_metric)
        if kept is None:
            return self._scores
        console.say(f"best: step {kept[1]} | {scores_line(kept[2])}")
        return kept[2]

    def close(self) -> None:
        checkpoints.close_quietly(self.best)


def evaluate(c, kind, params, data, workdir: str, step: int) -> dict:
    """Scores of `params` on `data`; writes `predictions_<split>.jsonl` and prints the scores."""
    scores, records = kind.evaluate(params, data)
    write_predictions(epath.Path(workdir) / f"predictions_{c.data.eval_split}.jsonl", records)
    console.say(f"step {step} | {c.data.eval_split} ({len(records)} {kind.unit}) | {scores_line(scores)}")
    return scores


def prepare(c, init: str, eval_only: bool):
    """(config, kind side): `c` completed from `init` and checked, its task registered, its trainer built,
    and train.steps and train.eval_every set from the epochs and the training split's size."""
    distributed.initialize(c.distributed)
    c = config_from_init(c, init)
    check(c)
    kind = KINDS[c.finetune.kind](c, workdir_lib.model_vocabulary(c))
    if c.finetune.epochs == 0 and not eval_only:
        c.train.steps = 1  # nothing is trained; the optimizer needs a schedule all the same
    elif not eval_only:
        examples = kind.count_train(shard_info()) * jax.process_count()
        epoch_steps = steps_per_epoch(examples, c.data.batch_size)
        c.train.steps = c.finetune.steps or epoch_steps * c.finetune.epochs
        c.train.eval_every = min(epoch_steps * c.finetune.eval_every_epochs, c.train.steps)
        console.say(
            f"{kind.task}: {examples:,} {kind.unit} for training, {epoch_steps} steps per epoch of {c.data.batch_size}"
        )
    config_lib.validate(c, jax.device_count())
    kind.build(sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor))
    return c, kind


def run(c, init: str, workdir: str, eval_only: bool = False) -> dict:
    """Fine-tunes (or with `eval_only` scores the best checkpoint); returns the best evaluation's
    scores (with finetune.epochs=0 those of the --init parameters)."""
    workdir = workdir_lib.absolute(workdir)
    if eval_only:
        c, init = workdir_lib.read_config(workdir), workdir
    if eval_only or c.finetune.epochs == 0:
        return _evaluate_only(c, init, workdir, eval_only)
    with workdir_lock.WorkdirLock(workdir, "glm_jax.finetune"):
        c, kind = prepare(c, init, eval_only)
        checkpoints.check_or_write_config(workdir, c)
        console.say(f"fine-tuning {kind.trainer.num_params():,} parameters from {init} for {c.train.steps} steps")
        return loop.run(c, workdir, FinetuningJob(c, init, workdir, kind))


def _evaluate_only(c, init: str, workdir: str, eval_only: bool) -> dict:
    """`run` without training: the best checkpoint's scores (`eval_only`), else the --init parameters'."""
    c, kind = prepare(c, init, eval_only)
    if eval_only:
        best = checkpoints.best_manager(workdir, kind.main_metric)
        try:
            base = workdir_lib.base_params(c, kind.trainer.mesh)  # the frozen parameters of a run that has some
            restored = checkpoints.restore_best(best, kind.trainer.abstract_state.params, kind.main_metric, base)
        finally:
            checkpoints.close_quietly(best)
        if restored is None:
            raise ValueError(f"{workdir}/best holds no checkpoint: fine-tune first.")
        params, step, _ = restored
        return evaluate(c, kind, params, kind.eval_data(), workdir, step)
    return evaluate(c, kind, start_state(c, kind.trainer, init).params, kind.eval_data(), workdir, 0)
