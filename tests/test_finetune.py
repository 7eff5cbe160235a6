"""Fine-tuning: the cloze loss over padded answers, end to end on a tiny task, exact resume, eval_only;
every SuperGLUE task and seq2seq recipe on mock data; label smoothing."""

import json
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import workdir
from glm_jax.data import vocab
from glm_jax.downstream import cloze, generation_metrics, seq2seq, superglue
from glm_jax.downstream import finetuning_job as finetune
from glm_jax.downstream.cloze import scoring
from glm_jax.downstream.superglue import metrics
from glm_jax.model.glm import init_params
from glm_jax.training import losses

TASK = "test_tiny_sentiment"
WORDS = ["good", "fine", "nice", "bad", "poor", "awful"]


def tiny_source() -> seqio.FunctionDataSource:
    """Sentences that say good or bad things; label 1 for good ones."""

    def dataset_fn(split, shuffle_files, seed=None):
        rng = np.random.default_rng(0 if split == "train" else 1)
        words = rng.integers(len(WORDS), size=24 if split == "train" else 10)
        texts = [f"The module is {WORDS[w]} and it works." for w in words]
        ds = tf.data.Dataset.from_tensor_slices({"text": texts, "label": (words < 3).astype(np.int32)})
        return ds.shuffle(len(texts), seed=seed) if shuffle_files else ds

    return seqio.FunctionDataSource(dataset_fn, splits=["train", "validation"])


cloze.register_cloze_task(
    TASK,
    tiny_source(),
    vocab.default_vocabulary(),
    cloze.Cloze(lambda ex: [cloze.shortenable(ex["text"]), " It is", cloze.MASK, "."], verbalizer=("bad", "good")),
)


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 32, 2
    c.data.seq_len = 128
    trainer, _ = workdir.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(3), 128)))
    path = str(tmp_path_factory.mktemp("init") / "w")
    workdir.write(path, c, params)
    return path


def tiny_config(**finetune):
    c = config_lib.finetune_defaults()
    c.finetune.update(task=TASK, epochs=2, **finetune)
    c.data.update(seq_len=32, batch_size=8)
    c.optimizer.peak_lr = 1e-3
    c.train.update(log_every=100, keep_checkpoints=2)
    return c


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def test_padded_answers_change_nothing_and_never_give_nan():
    rng = np.random.default_rng(0)
    log_probs = jnp.asarray(-rng.uniform(1, 9, (3, 2)), jnp.float32)
    batch = {"choice_lengths": jnp.array([[2, 3], [1, 1], [4, 2]]), "label": jnp.array([1, 0, -1])}
    padded = {"choice_lengths": jnp.pad(batch["choice_lengths"], ((0, 0), (0, 3))), "label": batch["label"]}
    for loss in scoring.LOSSES:
        for penalty in (0.0, 1.0):
            plain = scoring.question_sums(log_probs, batch, length_penalty=penalty, loss=loss)
            wider = jnp.pad(log_probs, ((0, 0), (0, 3)))
            more = scoring.question_sums(wider, padded, length_penalty=penalty, loss=loss)
            jax.tree.map(np.testing.assert_allclose, plain, more)
    # By hand, loss 'ce' without penalty: question 0 has gold 1, question 1 gold 0, question 2 no label.
    expected = sum(np.logaddexp(*log_probs[i]) - log_probs[i, g] for i, g in ((0, 1), (1, 0)))
    sums = scoring.question_sums(log_probs, batch)
    np.testing.assert_allclose(sums["loss_sum"], expected, rtol=1e-6)
    assert sums["weight_sum"] == 2
    empty = {"choice_lengths": jnp.zeros((2, 3), jnp.int32), "label": jnp.array([0, 1])}
    sums = scoring.question_sums(jnp.zeros((2, 3)), empty, loss="mix")
    assert all(np.isfinite(v) for v in sums.values()) and sums["weight_sum"] == 0


def test_finetunes_resumes_exactly_and_scores_the_best(init_dir, tmp_path):
    full = str(tmp_path / "full")
    scores = finetune.run(tiny_config(), init_dir, full)
    assert set(scores) == {"accuracy", "truncated"}
    records = read_jsonl(tmp_path / "full" / "predictions_validation.jsonl")
    assert len(records) == 10 and all(r["choices"] == ["bad", "good"] for r in records)
    lines = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    assert [r["step"] for r in lines if "eval_accuracy" in r] == [3, 6]  # 24 questions / 8 = 3 steps per epoch

    # A run stopped after its first epoch (its last checkpoint removed) resumes to the same end.
    resumed = tmp_path / "resumed"
    finetune.run(tiny_config(), init_dir, str(resumed))
    shutil.rmtree(resumed / "checkpoints" / "6")
    shutil.rmtree(resumed / "best")
    finetune.run(tiny_config(), init_dir, str(resumed))
    assert read_jsonl(resumed / "predictions_validation.jsonl") == records

    again = finetune.run(None, "", full, eval_only=True)
    assert again == {k: v for k, v in scores.items()}


def test_zero_shot_into_a_new_workdir_in_both_cloze_styles(init_dir, tmp_path):
    """epochs 0 scores the --init parameters and writes the predictions into a workdir not yet made; the
    masked-LM style scores the same questions otherwise (answers as masks in place)."""
    scores = {}
    for style in ("glm", "masked_lm", "pet"):
        c = tiny_config(cloze_style=style)
        c.finetune.epochs = 0
        if style == "pet":
            with pytest.raises(ValueError, match="finetune.cloze_style must be one of"):
                finetune.run(c, init_dir, str(tmp_path / style / "w"))
            break
        finetune.run(c, init_dir, str(tmp_path / style / "w"))
        records = read_jsonl(tmp_path / style / "w" / "predictions_validation.jsonl")
        assert len(records) == 10
        scores[style] = [r["scores"] for r in records]
    assert not np.allclose(scores["glm"], scores["masked_lm"])


def test_from_scratch_and_config_errors(init_dir, tmp_path):
    with pytest.raises(ValueError, match="finetune.loss"):
        finetune.run(tiny_config(loss="squared"), init_dir, str(tmp_path / "a"))
    with pytest.raises(ValueError, match="exactly one of finetune.task or finetune.superglue"):
        finetune.run(tiny_config(superglue="rte"), init_dir, str(tmp_path / "b"))
    with pytest.raises(ValueError, match="data.seq_len must be <="):
        c = tiny_config()
        c.data.seq_len = 256
        finetune.run(c, init_dir, str(tmp_path / "c"))


def test_cli_requires_init(tmp_path):
    command = [sys.executable, "-m", "glm_jax.finetune", "--config", str(ROOT / "configs/finetune/demo_choice.py"),
               f"--workdir={tmp_path}"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "--init DIR" in out.stderr


@pytest.mark.parametrize("task", superglue.TASKS)
def test_every_superglue_task_trains_and_evaluates_on_mock_data(task, init_dir, tmp_path):
    """A few steps of each task's recipe on mocked TFDS data (random text), then its metrics."""
    c = superglue.recipe_config(task)
    c.finetune.update(epochs=1, max_choices=48 if task == "record" else 16, answer_len=24)  # random mock text
    c.data.update(seq_len=128, batch_size=8)
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        scores = finetune.run(c, init_dir, str(tmp_path / task))
    assert list(scores) == [*metrics.TASK_METRICS[task].names, "truncated"]
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    records = read_jsonl(tmp_path / task / "predictions_validation.jsonl")
    assert len(records) >= 4 and all(0 <= r["prediction"] < len(r["choices"]) for r in records)


def test_label_smoothing_equals_a_hand_computation():
    logits = np.array([[[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]], np.float32)
    targets = np.array([[0, 2]], np.int32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    # (1 - e) * -log p(target) + e * mean over the 3 ids of -log p, e = 0.1
    by_hand = 0.9 * -np.take_along_axis(log_p, targets[..., None], -1)[..., 0] + 0.1 * -log_p.mean(-1)
    np.testing.assert_allclose(losses.smoothed_cross_entropy(logits, targets, 0.1), by_hand, rtol=1e-6)
    smoothed = optax.smooth_labels(jax.nn.one_hot(targets, 3), 0.1)
    np.testing.assert_allclose(by_hand, optax.softmax_cross_entropy(logits, smoothed), rtol=1e-6)
    batch = {"targets": targets, "loss_weights": np.array([[1, 0]])}
    np.testing.assert_allclose(losses.scored_sums(logits, batch, 0.1)["loss_sum"], by_hand[0, 0], rtol=1e-6)


SHARED_VOCAB = ROOT.parent / "shared" / "vocab"
OFFICIAL_VOCABULARIES = {
    "bert": f"wordpiece:{SHARED_VOCAB / 'bert-base-uncased-vocab.txt'}",
    "gpt2": f"bpe:{SHARED_VOCAB / 'gpt2-vocab.json'},{SHARED_VOCAB / 'gpt2-merges.txt'}",
}


@pytest.mark.parametrize("dataset,vocabulary", [("cnn_dailymail", "bert"), ("gigaword", "gpt2")])
def test_summary_recipes_with_the_official_vocabularies(dataset, vocabulary, tmp_path):
    """The CNN/DM and Gigaword recipes fine-tune and decode with a model of the BERT or GPT-2 vocabulary (a
    converted glm-large's or glm-10b's), in the official layout (Part A [PAD]-padded, `pad_part_a`)."""
    if not SHARED_VOCAB.exists():
        pytest.skip(f"the real vocabularies ({SHARED_VOCAB}) are absent")
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.update(num_layers=1, hidden=32, heads=2)
    c.data.update(seq_len=96, vocabulary=OFFICIAL_VOCABULARIES[vocabulary])
    trainer, model_vocab = workdir.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(4), 96)))
    init = str(tmp_path / "init")
    workdir.write(init, c, params)
    f = seq2seq.recipe_config(dataset)
    f.finetune.update(epochs=1, answer_len=16, min_target_len=2, num_beams=2)
    f.data.update(seq_len=80, batch_size=8)
    assert f.finetune.pad_part_a
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        scores = finetune.run(f, init, str(tmp_path / "tuned"))
    assert 0.0 <= scores["rougeLsum"] <= 100.0
    records = read_jsonl(tmp_path / "tuned" / "predictions_validation.jsonl")
    assert len(records) == 4 and all(isinstance(r["prediction"], str) for r in records)


@pytest.mark.parametrize("dataset", seq2seq.DATASETS)
def test_every_seq2seq_recipe_trains_and_decodes_on_mock_data(dataset, init_dir, tmp_path):
    """A few steps of each dataset's recipe on mocked TFDS data, then beam search and its metric."""
    c = seq2seq.recipe_config(dataset)
    c.finetune.update(epochs=1, answer_len=16, min_target_len=2, num_beams=2)  # a tiny model: short targets
    c.data.update(seq_len=80, batch_size=8)
    workdir = tmp_path / dataset
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        scores = finetune.run(c, init_dir, str(workdir))
    main = generation_metrics.MAIN[c.finetune.metric]
    assert main in scores and 0.0 <= scores[main] <= 100.0 and scores["examples_per_s"] > 0
    records = read_jsonl(workdir / "predictions_validation.jsonl")
    assert len(records) == 4 and all(set(r) == {"prediction", "reference"} for r in records)
    if dataset == "cnn_dailymail":  # generation works on a fine-tuned workdir
        command = [sys.executable, "-m", "glm_jax.generate", f"--workdir={workdir}", "--text=The [MASK] is here.",
                   "--max_new_tokens=4"]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0 and "is here" in out.stdout, out.stderr[-2000:]
