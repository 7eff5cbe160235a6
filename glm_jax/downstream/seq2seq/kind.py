"""Fine-tuning on a sequence-to-sequence task (`finetune.kind = seq2seq`): data, objective, evaluation.

An example is one row of the data contract (`layout`): Part A holds the source and a blank,
Part B `sop` + the target. Training is the pretraining objective over Part B with label smoothing;
evaluation decodes each validation source's blank with `decoding.Decoder` (beam search on the KV
cache: beams, length penalty, no-repeat n-grams, min/max target length) and scores the texts
against the references with ROUGE or BLEU (`generation_metrics`). A blank task (text infilling,
`blanks`) has several blanks in Part A: all are filled, in order, and the whole filled text is scored.
"""

import functools
import time

import ml_collections
import seqio
import tensorflow as tf

from glm_jax import workdir as workdir_lib
from glm_jax.data import pipeline, vocab
from glm_jax.downstream import generation_metrics
from glm_jax.downstream import prompts as prompts_lib
from glm_jax.downstream.decoding import DecodeOptions, Decoder, Prompts
from glm_jax.downstream.seq2seq import blank_texts, blanks, datasets, layout, recipes
from glm_jax.training import flops
from glm_jax.training.objective import contract_sums
from glm_jax.training.trainer import Trainer


def source_len(c: ml_collections.ConfigDict) -> int:
    """Part A's length: data.seq_len less the target's (`finetune.answer_len`, eop included)."""
    return c.data.seq_len - c.finetune.answer_len


def decode_options(c: ml_collections.ConfigDict) -> DecodeOptions:
    f = c.finetune
    return DecodeOptions(
        strategy="beam" if f.num_beams > 1 else "greedy",
        max_new_tokens=f.answer_len - 1,
        min_new_tokens=f.min_target_len,
        num_beams=f.num_beams,
        length_penalty=f.length_penalty,
        no_repeat_ngram_size=f.no_repeat_ngram_size,
    )


class Seq2SeqKind:
    """A seq2seq task's side of `glm_jax.finetune`: registration, data, trainer and evaluation."""

    unit = "examples"

    @staticmethod
    def checks(c: ml_collections.ConfigDict) -> list[tuple[bool, str]]:
        """The seq2seq settings' checks: (holds, what must hold)."""
        f = c.finetune
        return [
            (bool(f.task) != bool(f.seq2seq), "set exactly one of finetune.task or finetune.seq2seq"),
            (
                not f.seq2seq or f.seq2seq in (*recipes.DATASETS, recipes.BLANK),
                f"finetune.seq2seq must be one of {(*recipes.DATASETS, recipes.BLANK)}",
            ),
            (f.seq2seq != recipes.BLANK or 0.0 < f.blank_ratio <= 1.0, "finetune.blank_ratio must be in (0, 1]"),
            (f.metric in generation_metrics.MAIN, f"finetune.metric must be one of {tuple(generation_metrics.MAIN)}"),
            (f.num_beams >= 1, "finetune.num_beams must be >= 1"),
            (0 <= f.min_target_len < f.answer_len, "finetune.min_target_len must be in [0, finetune.answer_len)"),
            (0.0 <= f.label_smoothing < 1.0, "finetune.label_smoothing must be in [0, 1)"),
            (f.no_repeat_ngram_size >= 0, "finetune.no_repeat_ngram_size must be >= 0"),
            (
                not c.prompt.tokens and not (c.prompt.prefix and f.seq2seq == recipes.BLANK),
                "a seq2seq task takes continuous prompts as prompt.prefix only (its Part A has no prompt spots for "
                "prompt.tokens), and text infilling (finetune.seq2seq=blank) none",
            ),
            (
                not c.model.causal or (f.seq2seq != recipes.BLANK and not f.pad_part_a),
                "a left-to-right (causal) model continues its source, so it fills no blanks (finetune.seq2seq="
                f"{recipes.BLANK!r}) and takes no padding after it (finetune.pad_part_a)",
            ),
        ]

    def __init__(self, c: ml_collections.ConfigDict, vocabulary: seqio.Vocabulary):
        self.c, self.vocabulary = c, vocabulary
        if c.finetune.seq2seq == recipes.BLANK:
            self.task = blank_texts.register(
                vocabulary, c.finetune.source, ratio=c.finetune.blank_ratio, source_len=source_len(c),
                target_len=c.finetune.answer_len, text_key=c.finetune.text_key,
            )  # fmt: skip
        elif c.finetune.seq2seq:
            self.task = datasets.register(
                c.finetune.seq2seq, vocabulary, source=c.finetune.source, source_len=source_len(c),
                target_len=c.finetune.answer_len, task_mask=c.finetune.task_mask,
                prompts=prompts_lib.from_config(c, vocabulary),
            )  # fmt: skip
        else:
            pipeline.import_task_module(c.finetune.task_module)
            self.task = pipeline.get_task(c.finetune.task).name
            prompts_lib.with_prompts(self.task, prompts_lib.from_config(c, vocabulary))
        self.main_metric = generation_metrics.MAIN[c.finetune.metric]
        self.fills_text = self.task in blanks.BLANK_TASKS  # scores the whole filled text

    def _padding(self):
        """The example transform of `finetune.pad_part_a` (official layout), or None."""
        if not self.c.finetune.pad_part_a:
            return None
        pad = vocab.command_tokens(self.vocabulary).pad
        return functools.partial(layout.pad_part_a, source_len=source_len(self.c), pad=pad)

    def _examples(self, split: str, shard_info=None, limit: int = 0):
        ds = pipeline.task_examples(self.task, split, None, seed=blanks.EVAL_SEED, shard_info=shard_info, trim=False,
                                    limit=limit)  # fmt: skip
        padding = self._padding()
        return ds.map(padding, num_parallel_calls=tf.data.AUTOTUNE) if padding else ds

    def count_train(self, shard_info) -> int:
        """Examples of this process's shard of the training split."""
        return pipeline.count(self._examples(self.c.finetune.train_split, shard_info))

    def build(self, mesh) -> Trainer:
        """The pretraining trainer with label smoothing, and a decoder on its mesh (train.steps set)."""
        objective = functools.partial(contract_sums, label_smoothing=self.c.finetune.label_smoothing)
        # A built-in dataset's target has at most answer_len tokens, eop included; another task's: unknown.
        seq_len = self.c.data.seq_len
        bound = min(self.c.finetune.answer_len, seq_len) if self.c.finetune.seq2seq else seq_len
        self.trainer, _ = workdir_lib.trainer_for(self.c, mesh, objective, self.vocabulary, bound)
        self.set_decoding(self.c.finetune.num_beams)
        return self.trainer

    def set_decoding(self, num_beams: int) -> None:
        """Decode with `num_beams` beams (1: greedy) and the config's other decoding settings."""
        self.c.finetune.num_beams = num_beams
        tokens = vocab.command_tokens(self.vocabulary)
        config = self.trainer.glm_config
        self.decoder = Decoder(config, tokens, decode_options(self.c), partitioning=self.trainer.partitioning)

    def train_stream(self, host_batch: int, shard_info, position: int) -> pipeline.BatchStream:
        """Endless shuffled training rows of this process, `host_batch` at a time, from `position`."""
        c = self.c
        return pipeline.TrainStream(self.task, c.data.seq_len, host_batch, seed=c.train.seed, shard_info=shard_info,
                                    position=position, example_fn=self._padding())  # fmt: skip

    def eval_data(self) -> list[tuple[list[list[int]], list[str]]]:
        """(Part A ids, reference texts) of `data.eval_split`, in order, in batches of data.batch_size (the first
        `data.eval_batches` batches if > 0, else all)."""
        ds = self._examples(self.c.data.eval_split, limit=pipeline.eval_limit(self.c.data))
        examples = [(ex["part_a"].tolist(), ex["reference"].decode("utf-8")) for ex in ds.as_numpy_iterator()]
        if not examples:
            raise ValueError(f"Split {self.c.data.eval_split!r} of task {self.task!r} has no examples.")
        size = self.c.data.batch_size
        return [tuple(map(list, zip(*examples[i : i + size], strict=True))) for i in range(0, len(examples), size)]

    def generate(self, params, part_a: list[list[int]]) -> list[str]:
        """The decoded target text of each Part A (a blank task's: the whole filled text), the batch padded to full
        size: one compiled shape."""
        size = self.c.data.batch_size
        rows = part_a + [part_a[0]] * (size - len(part_a))
        fills, lengths = self.decoder.fill(params, Prompts(rows, self.decoder.tokens, source_len(self.c), wrap=False))
        if self.fills_text:
            return [blanks.filled_text(part_a[i], fills[i], lengths[i], self.vocabulary) for i in range(len(part_a))]
        return [self.vocabulary.decode(fills[i, 0, : lengths[i, 0]].tolist()) for i in range(len(part_a))]

    def evaluate(self, params, data) -> tuple[dict, list[dict]]:
        """(scores, one record per example: prediction and reference) of `params` on `data`."""
        start = time.perf_counter()
        predictions, references = [], []
        for part_a, refs in data:
            predictions += self.generate(params, part_a)
            references += refs
        seconds = time.perf_counter() - start
        scores = generation_metrics.scores(self.c.finetune.metric, predictions, references)
        scores["examples_per_s"] = len(predictions) / seconds
        records = [{"prediction": p, "reference": r} for p, r in zip(predictions, references, strict=True)]
        return scores, records

    def step_flops(self) -> float:
        """Model FLOPs of a train step (Part A bidirectional, the target causal over it)."""
        c = self.c
        a, t = source_len(c), c.finetune.answer_len
        pairs = c.data.batch_size * (a * a + t * a + t * (t + 1) / 2)
        logits = self.trainer.logit_tokens(c.data.batch_size, c.data.seq_len)  # logits only at the targets
        return flops.train_flops(self.trainer.glm_config, c.data.batch_size * c.data.seq_len, pairs, logits)
