"""Fine-tuning a classifier (`finetune.kind = classify`): the official sequence classifier's data,
objective and evaluation, on SuperGLUE (`finetune.superglue`) or a registered classify task.

The objective is `finetune.loss` over the question's logits (its classes, or its choices' rows);
predictions are their argmax, the scores those of `finetune.metric` as for a cloze task (WSC's classes
are False / True, scored by plain accuracy).
"""

import functools

import ml_collections
import seqio
import tensorflow as tf

from glm_jax import workdir as workdir_lib
from glm_jax.data import pipeline, vocab
from glm_jax.downstream import prompts as prompts_lib
from glm_jax.downstream.classify import model, rows
from glm_jax.downstream.classify import superglue as classify_superglue
from glm_jax.downstream.classify.trainer import ClassifierTrainer
from glm_jax.downstream.cloze import kind as cloze_kind
from glm_jax.downstream.cloze import questions
from glm_jax.training import flops


class ClassifyKind:
    """A classify task's side of `glm_jax.finetune`: registration, data, trainer and evaluation."""

    unit = "questions"

    @staticmethod
    def checks(c: ml_collections.ConfigDict) -> list[tuple[bool, str]]:
        """The questions' checks (task, choices, loss, metric), the pool token and a bidirectional model."""
        pool = (c.finetune.pool_token in model.POOL_TOKENS, f"finetune.pool_token must be one of {model.POOL_TOKENS}")
        causal = (
            not c.model.causal,
            "the classifier pools a row that its tokens see whole; a left-to-right (causal) model fine-tunes as a "
            "cloze (finetune.kind=cloze, cloze_style=left_to_right) or seq2seq",
        )
        return [*cloze_kind.ClozeKind.question_checks(c), pool, causal]

    def __init__(self, c: ml_collections.ConfigDict, vocabulary: seqio.Vocabulary):
        self.c, self.vocabulary = c, vocabulary
        prompts = prompts_lib.from_config(c, vocabulary)
        if c.finetune.superglue:
            source = c.finetune.source
            self.task = classify_superglue.register(c.finetune.superglue, vocabulary, source=source, prompts=prompts)
        else:
            pipeline.import_task_module(c.finetune.task_module)
            self.task = pipeline.get_task(c.finetune.task).name
            prompts_lib.with_prompts(self.task, prompts)
        self.classifier = rows.classifier_of(self.task)
        self.main_metric = cloze_kind.main_metric(c.finetune.metric)

    def shapes(self, train: bool = False) -> rows.Shapes:
        """A classification task's one row and its classes; a multiple-choice task's rows, one per choice
        (`finetune.max_choices`, or `max_train_choices` in training)."""
        f, seq_len = self.c.finetune, self.c.data.seq_len
        if self.classifier.labels:
            return rows.Shapes(1, seq_len, len(self.classifier.labels))
        choices = (train and f.max_train_choices) or f.max_choices
        return rows.Shapes(choices, seq_len, choices)

    def _questions(self, split: str, *, shuffle: bool, repeat: bool, shard_info=None, limit: int = 0):
        """Padded questions of `split` (tf.data, unbatched), shaped for training if `repeat`. With the `start`
        pool token a row keeps one padding token after its text (the official row would index past its end)."""
        budget = self.c.data.seq_len - (self.c.finetune.pool_token == "start")
        ds = pipeline.task_examples(self.task, split, {"inputs": budget}, seed=self.c.train.seed, shuffle=shuffle,
                                    repeat=repeat, shard_info=shard_info, trim=False, limit=limit)  # fmt: skip
        pad = functools.partial(rows.pad_question, shapes=self.shapes(train=repeat))
        return ds.map(pad, num_parallel_calls=tf.data.AUTOTUNE)

    def count_train(self, shard_info) -> int:
        """Questions of this process's shard of the training split."""
        return pipeline.count(
            self._questions(self.c.finetune.train_split, shuffle=False, repeat=False, shard_info=shard_info)
        )

    def build(self, mesh) -> ClassifierTrainer:
        """The trainer of the transformer and the head, with the classifier objective (train.steps must be set)."""
        tokens = vocab.command_tokens(self.vocabulary)
        f = self.c.finetune
        self.objective = model.Objective(f.pool_token, tokens.eos, self.classifier.outputs, f.loss)
        self.trainer, _ = workdir_lib.trainer_for(
            self.c, mesh, self.objective, self.vocabulary, trainer_class=ClassifierTrainer
        )
        self.scorer = cloze_kind.AnswerScorer(self.trainer, self.objective, rows.DEVICE_FIELDS)
        return self.trainer

    def train_stream(self, host_batch: int, shard_info, position: int) -> pipeline.BatchStream:
        """Endless shuffled training questions of this process, `host_batch` at a time, from `position`."""
        ds = self._questions(self.c.finetune.train_split, shuffle=True, repeat=True, shard_info=shard_info)
        padded = rows.padded_shapes(self.shapes(train=True))
        device_shapes = {k: padded[k] for k in rows.DEVICE_FIELDS}
        batches = ds.map(lambda ex: {k: ex[k] for k in rows.DEVICE_FIELDS})
        return pipeline.BatchStream(batches.padded_batch(host_batch, device_shapes, drop_remainder=True), position)

    def eval_data(self) -> list[dict]:
        """The questions of `data.eval_split` (the first `data.eval_batches` batches if > 0, else all), in order,
        in global batches (every process reads them all; each feeds the devices its own rows), the last padded
        with empty questions."""
        size, limit = self.c.data.batch_size, pipeline.eval_limit(self.c.data)
        ds = self._questions(self.c.data.eval_split, shuffle=False, repeat=False, limit=limit)
        padded = ds.padded_batch(size, rows.padded_shapes(self.shapes()))
        batches = [questions.empty_rows(b, size - len(b["label"])) for b in padded.as_numpy_iterator()]
        if not batches:
            raise ValueError(f"Split {self.c.data.eval_split!r} of task {self.task!r} has no examples.")
        return batches

    def evaluate(self, params, data: list[dict]) -> tuple[dict, list[dict]]:
        """(scores, one record per question) of `params` on `data`."""
        out = [r for b in data for r in cloze_kind.records(self.scorer(params, b), b, answered=b["choice_mask"] > 0)]
        metric = "accuracy" if self.c.finetune.metric == "wsc" else self.c.finetune.metric
        scores = cloze_kind.task_scores(metric, out)
        scores["truncated"] = sum(r["truncated"] for r in out) / len(out)
        return scores, out

    def step_flops(self) -> float:
        """Model FLOPs of a train step at the static shapes: every row whole, bidirectional, no vocabulary logits."""
        s = self.shapes(train=True)
        tokens = self.c.data.batch_size * s.rows * s.seq_len
        return flops.train_flops(self.trainer.glm_config, tokens, tokens * s.seq_len, logit_tokens=0)
