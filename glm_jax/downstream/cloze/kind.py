"""Fine-tuning on a cloze task (`finetune.kind = cloze`): its data, objective and evaluation.

The objective is the cross-entropy of the gold answer among a question's answers, each scored by
`scoring.choice_log_probs` (Part A once, the answers from its KV cache); predictions are the best
scored answer, and the scores those of `finetune.metric` (accuracy or a SuperGLUE task's).
"""

import dataclasses
import functools

import jax
import ml_collections
import numpy as np
import seqio
import tensorflow as tf
from jax.experimental import multihost_utils

from glm_jax import workdir as workdir_lib
from glm_jax.data import pipeline, vocab
from glm_jax.downstream import prompts as prompts_lib
from glm_jax.downstream.cloze import masked_scoring, questions, scoring
from glm_jax.downstream.superglue import metrics
from glm_jax.downstream.superglue import tasks as superglue_tasks
from glm_jax.training import flops, sharding
from glm_jax.training.trainer import Trainer

SUPERGLUE = tuple(sorted(metrics.TASK_METRICS))
# finetune.cloze_style: glm scores an answer as Part B from the blank (autoregressive); masked_lm puts one
# [MASK] per answer token in place of the blank and scores them where they stand (BERT, PET); left_to_right puts
# the answer in place and scores it and the rest of the row left to right (GPT; both in masked_scoring).
CLOZE_STYLES = ("glm", "masked_lm", "left_to_right")


def shapes(c: ml_collections.ConfigDict, train: bool = False) -> questions.Shapes:
    """Batch shapes of evaluation (or, with `train`, training) questions (before `used_layouts`)."""
    choices = (train and c.finetune.max_train_choices) or c.finetune.max_choices
    return questions.Shapes(c.data.seq_len - 1, choices, c.finetune.answer_len)


def device_fields(batch: dict) -> dict:
    return {k: batch[k] for k in questions.DEVICE_FIELDS}


def used_layouts(batch: dict) -> dict:
    """A host batch cut to the Part A layouts its questions use (`questions.layouts_used`); the processes
    of a multi-host run agree on the most any of them needs, so that their batch shapes are equal."""
    layouts = questions.layouts_used(batch)
    if jax.process_count() > 1:
        layouts = int(np.max(multihost_utils.process_allgather(np.int32(layouts))))
    return questions.keep_layouts(batch, layouts)


@dataclasses.dataclass(frozen=True)
class Objective:
    """The cloze objective in `Trainer`'s form (`objective(glm_config, params, batch, ...)`)."""

    sop: int
    length_penalty: float = 0.0
    loss: str = "ce"
    style: str = "glm"  # one of CLOZE_STYLES
    mask: int = -1  # masked_lm, left_to_right: the [MASK] and eop ids
    eop: int = -1

    def log_probs(self, config, params, batch, *, deterministic: bool = True, rng=None):
        """`[B, C]` summed log-probabilities of the answers: from the blank (glm) or in place (the others)."""
        if self.style != "glm":
            in_place = {
                "masked_lm": masked_scoring.masked_log_probs,
                "left_to_right": masked_scoring.left_to_right_log_probs,
            }
            score = in_place[self.style]
            return score(config, params, batch, self.mask, self.eop, deterministic=deterministic, rng=rng)
        return scoring.choice_log_probs(config, params, batch, self.sop, deterministic=deterministic, rng=rng)

    def __call__(self, config, params, batch, *, deterministic: bool = True, rng=None) -> dict:
        log_probs = self.log_probs(config, params, batch, deterministic=deterministic, rng=rng)
        return scoring.question_sums(log_probs, batch, length_penalty=self.length_penalty, loss=self.loss)

    def scores(self, config, params, batch):
        """`[B, C]` answer scores (-inf for padded answers): the prediction is their argmax."""
        log_probs = self.log_probs(config, params, batch)
        return scoring.choice_scores(log_probs, batch["choice_lengths"], self.length_penalty)


class AnswerScorer:
    """Jitted answer scores of global batches on the trainer's mesh: `[B, C]` for every row, by
    `objective.scores` over the batch's `fields` (the classify kind's objective and fields work too)."""

    def __init__(self, trainer: Trainer, objective, fields=questions.DEVICE_FIELDS):
        self.trainer, self.fields = trainer, fields
        self._scores = jax.jit(
            functools.partial(objective.scores, trainer.glm_config),
            in_shardings=(trainer.state_shardings.params, trainer.batch_sharding),
            out_shardings=sharding.replicated(trainer.mesh),
        )

    def __call__(self, params, batch) -> np.ndarray:
        rows = len(batch["label"]) // jax.process_count()
        start = jax.process_index() * rows
        local = {k: batch[k][start : start + rows] for k in self.fields}
        with self.trainer.partitioning():
            return np.asarray(self._scores(params, self.trainer.device_batch(local)))


def records(scores: np.ndarray, batch: dict, answered: np.ndarray | None = None) -> list[dict]:
    """One record per real question of a batch: its prediction, label, group, answers and scores.
    `answered` `[B, C]`: the real answers (default: those with tokens, `choice_lengths` > 0)."""
    answered = batch["choice_lengths"] > 0 if answered is None else answered
    out = []
    for i in range(len(batch["label"])):
        n = int(np.sum(answered[i]))
        if n == 0:
            continue  # a padding row
        texts = [t.decode("utf-8") for t in batch["choice_texts"][i][:n]]
        best = int(np.argmax(scores[i, :n]))
        out.append({
            "prediction": best,
            "prediction_text": texts[best],
            "label": int(batch["label"][i]),
            "group": int(batch["group"][i]),
            "truncated": bool(batch["truncated"][i]),
            "choices": texts,
            "scores": [float(s) for s in scores[i, :n]],
            "answers": [a.decode("utf-8") for a in batch["answers"][i] if a],
        })  # fmt: skip
    return out


def task_scores(metric: str, records: list[dict]) -> dict:
    """The metric's scores of the predictions (`metric`: accuracy or a SuperGLUE task name)."""
    predictions = [r["prediction"] for r in records]
    labels = [r["label"] for r in records]
    if metric == "wsc":  # candidate 0 is the example's own span; the group holds its True/False label
        return {"accuracy": metrics.accuracy([int(p == 0) for p in predictions], [r["group"] for r in records])}
    if metric == "accuracy":
        return {"accuracy": metrics.accuracy(predictions, labels)}
    return metrics.task_scores(
        metric,
        predictions,
        labels,
        groups=[r["group"] for r in records],
        golds=[r["answers"] for r in records],
        pred_texts=[r["prediction_text"] for r in records],
    )


def main_metric(metric: str) -> str:
    """The score that picks the best checkpoints for `finetune.metric`."""
    return "accuracy" if metric == "accuracy" else metrics.TASK_METRICS[metric].main


class ClozeKind:
    """A cloze task's side of `glm_jax.finetune`: registration, data, trainer and evaluation."""

    unit = "questions"

    @staticmethod
    def question_checks(c: ml_collections.ConfigDict) -> list[tuple[bool, str]]:
        """The checks of a task of questions (cloze or classify): (holds, what must hold)."""
        f = c.finetune
        return [
            (bool(f.task) != bool(f.superglue), "set exactly one of finetune.task or finetune.superglue"),
            (not f.superglue or f.superglue in SUPERGLUE, f"finetune.superglue must be one of {SUPERGLUE}"),
            (f.max_choices > 0, "finetune.max_choices must be > 0"),
            (0 <= f.max_train_choices <= f.max_choices, "finetune.max_train_choices must be in [0, max_choices]"),
            (f.loss in scoring.LOSSES, f"finetune.loss must be one of {scoring.LOSSES}"),
            (
                f.metric == "accuracy" or f.metric in metrics.TASK_METRICS,
                f"finetune.metric must be accuracy or one of {SUPERGLUE} for a cloze or classify task",
            ),
        ]

    @staticmethod
    def checks(c: ml_collections.ConfigDict) -> list[tuple[bool, str]]:
        """The cloze settings' checks: the questions' and the scoring style's."""
        f = c.finetune
        return [
            *ClozeKind.question_checks(c),
            (f.cloze_style in CLOZE_STYLES, f"finetune.cloze_style must be one of {CLOZE_STYLES}"),
            (
                c.model.causal == (f.cloze_style == "left_to_right"),
                "a left-to-right (causal) model scores answers with finetune.cloze_style=left_to_right, and only it "
                f"does (model.causal={c.model.causal}, cloze_style={f.cloze_style!r})",
            ),
        ]

    def __init__(self, c: ml_collections.ConfigDict, vocabulary: seqio.Vocabulary):
        self.c, self.vocabulary = c, vocabulary
        if c.finetune.superglue:
            pattern = None if c.finetune.pattern_id < 0 else c.finetune.pattern_id
            self.task = superglue_tasks.register(
                c.finetune.superglue, vocabulary, source=c.finetune.source, pattern_id=pattern,
                prompts=prompts_lib.from_config(c, vocabulary),
            )  # fmt: skip
        else:
            pipeline.import_task_module(c.finetune.task_module)
            self.task = pipeline.get_task(c.finetune.task).name
            prompts_lib.with_prompts(self.task, prompts_lib.from_config(c, vocabulary))
        self.main_metric = main_metric(c.finetune.metric)

    def _questions(self, split: str, *, shuffle: bool, repeat: bool, shard_info=None, limit: int = 0):
        """Padded questions of `split` (tf.data, unbatched), shaped for training if `repeat`."""
        ds = pipeline.task_examples(self.task, split, {"inputs": self.c.data.seq_len}, seed=self.c.train.seed,
                                    shuffle=shuffle, repeat=repeat, shard_info=shard_info, trim=False,
                                    limit=limit)  # fmt: skip
        pad = functools.partial(questions.pad_question, shapes=shapes(self.c, train=repeat))
        return ds.map(pad, num_parallel_calls=tf.data.AUTOTUNE)

    def count_train(self, shard_info) -> int:
        """Questions of this process's shard of the training split."""
        return pipeline.count(
            self._questions(self.c.finetune.train_split, shuffle=False, repeat=False, shard_info=shard_info)
        )

    def build(self, mesh) -> Trainer:
        """The pretraining trainer with the cloze objective (train.steps must be set)."""
        f = self.c.finetune
        t = vocab.command_tokens(self.vocabulary)
        self.objective = Objective(t.sop, f.length_penalty, f.loss, f.cloze_style, t.mask, t.eop)
        self.trainer, _ = workdir_lib.trainer_for(self.c, mesh, self.objective, self.vocabulary)
        self.trainer.prompt_task_tokens = tuple(questions.task_tokens(self.task, self.vocabulary))
        self.scorer = AnswerScorer(self.trainer, self.objective)
        return self.trainer

    def train_stream(self, host_batch: int, shard_info, position: int) -> pipeline.BatchStream:
        """Endless shuffled training questions of this process, `host_batch` at a time, from `position`."""
        ds = self._questions(self.c.finetune.train_split, shuffle=True, repeat=True, shard_info=shard_info)
        padded = questions.padded_shapes(shapes(self.c, train=True))
        device_shapes = {k: v for k, v in padded.items() if k in questions.DEVICE_FIELDS}
        batches = ds.map(device_fields).padded_batch(host_batch, device_shapes, drop_remainder=True)
        return pipeline.BatchStream(batches, position, finish=used_layouts)

    def eval_data(self) -> list[dict]:
        """The questions of `data.eval_split` (the first `data.eval_batches` batches if > 0, else all), in order,
        in global batches (every process reads them all; each feeds the devices its own rows), the last padded
        with empty rows."""
        size, limit = self.c.data.batch_size, pipeline.eval_limit(self.c.data)
        ds = self._questions(self.c.data.eval_split, shuffle=False, repeat=False, limit=limit)
        padded = ds.padded_batch(size, questions.padded_shapes(shapes(self.c)))
        batches = [questions.empty_rows(b, size - len(b["label"])) for b in padded.as_numpy_iterator()]
        batches = [questions.keep_layouts(b, questions.layouts_used(b)) for b in batches]  # the same in every process
        if not batches:
            raise ValueError(f"Split {self.c.data.eval_split!r} of task {self.task!r} has no examples.")
        return batches

    def evaluate(self, params, data: list[dict]) -> tuple[dict, list[dict]]:
        """(scores, one record per question) of `params` on `data`."""
        out = [r for batch in data for r in records(self.scorer(params, batch), batch)]
        scores = task_scores(self.c.finetune.metric, out)
        scores["truncated"] = sum(r["truncated"] for r in out) / len(out)
        return scores, out

    def step_flops(self) -> float:
        """Model FLOPs of a train step at the static shapes (Part A, then every answer over Part A),
        counted with one Part A layout per question (questions with more cost more)."""
        s, b = shapes(self.c, train=True), self.c.data.batch_size
        answers = s.choices * s.answer_len
        tokens = b * (s.part_a + answers)
        pairs = b * (s.part_a**2 + answers * s.part_a + s.choices * s.answer_len * (s.answer_len + 1) / 2)
        return flops.train_flops(self.trainer.glm_config, tokens, pairs)
