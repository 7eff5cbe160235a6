"""Cloze answer scoring: Part A once + answers from the KV cache equals one full forward per answer."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from glm_jax import config as config_lib
from glm_jax.downstream.cloze import kind as cloze_kind
from glm_jax.downstream.cloze import scoring
from glm_jax.model.glm import GLMConfig, init_params
from glm_jax.training import sharding
from glm_jax.training.synthetic import TOKENS
from glm_jax.training.trainer import Trainer

CONFIG = GLMConfig(vocab_size=64, num_layers=2, hidden=32, heads=4, max_len=40, blank_markers=TOKENS.blank_markers)


def question_batch(rng, lengths_a, choice_lengths, answer_len, layouts=None):
    """Questions with Part A `[CLS] ... [MASK] ... eos` of the given lengths and answers of the given lengths.

    `layouts` (optional, per question): the Part A layout of each answer; layout l > 0 of a question is its
    layout 0 with its last l tokens before the blank's neighbourhood cut (shorter, the blank elsewhere).
    """
    b, part_a = len(lengths_a), max(lengths_a) + 2
    c = max(len(x) for x in choice_lengths)
    layouts = layouts or [[0] * len(x) for x in choice_lengths]
    p = max(max(x) for x in layouts) + 1
    inputs = np.zeros((b, p, part_a), np.int32)
    segments = np.zeros((b, p, part_a), np.int32)
    choices = np.zeros((b, c, answer_len), np.int32)
    lengths = np.zeros((b, c), np.int32)
    own = np.zeros((b, c), np.int32)
    for i, n in enumerate(lengths_a):
        for layout in range(max(layouts[i]) + 1):
            m = n - 2 * layout
            inputs[i, layout, :m] = rng.integers(11, 64, m)
            inputs[i, layout, 0], inputs[i, layout, m // 3], inputs[i, layout, m - 1] = (
                TOKENS.cls,
                TOKENS.mask,
                TOKENS.eos,
            )
            segments[i, layout, :m] = 1
        for j, m in enumerate(choice_lengths[i]):
            choices[i, j, :m] = rng.integers(11, 64, m)
            choices[i, j, m - 1] = TOKENS.eop
            lengths[i, j] = m
            own[i, j] = layouts[i][j]
    return {"inputs": inputs, "segment_ids": segments, "choice_ids": choices, "choice_lengths": lengths,
            "choice_part_a": own}  # fmt: skip


@pytest.mark.parametrize(  # the scanned model, and the position schemes of the paper's ablations
    "variant",
    [{"scan_layers": False}, {"scan_layers": True}, {"block_positions": "constant"}, {"sentinel_positions": True}],
)
def test_cached_scores_equal_full_forward_per_answer(variant):
    config = GLMConfig(**{**CONFIG.__dict__, **variant})
    params = nn.unbox(init_params(config, jax.random.key(0), 16))
    layouts = [[0, 1, 2], [1, 0], [0]]  # answers scored with Part A layouts of their own
    batch = question_batch(np.random.default_rng(0), [9, 14, 5], [[3, 1, 4], [2, 2], [1]], 5, layouts)
    cached = scoring.choice_log_probs(config, params, batch, TOKENS.sop)
    full = scoring.full_forward_log_probs(config, params, batch, TOKENS.sop)
    np.testing.assert_allclose(cached, full, atol=1e-5)
    assert np.all(np.asarray(cached)[batch["choice_lengths"] == 0] == 0)
    assert np.all(np.asarray(cached)[batch["choice_lengths"] > 0] < 0)
    # Each answer's row holds its own layout: another layout changes its score, the others' stay.
    other = batch | {"choice_part_a": np.where(np.arange(3)[None] == 0, batch["choice_part_a"], 0)}
    moved = np.asarray(scoring.choice_log_probs(config, params, other, TOKENS.sop))
    changed = (batch["choice_part_a"] != other["choice_part_a"]) & (batch["choice_lengths"] > 0)
    assert changed.sum() == 2 and np.all(np.abs(moved - np.asarray(cached))[changed] > 1e-4)
    np.testing.assert_allclose(moved[~changed], np.asarray(cached)[~changed], atol=1e-5)


def test_contract_rows_are_each_answers_own_row():
    """Answer j's row: its layout's Part A (no padding), `sop` + the answer, targets the answer."""
    batch = question_batch(np.random.default_rng(2), [6], [[2, 3]], 4, [[1, 0]])
    rows = {k: np.asarray(v) for k, v in scoring.contract_rows(batch, TOKENS.sop).items()}
    for j, layout in enumerate((1, 0)):
        part_a = batch["inputs"][0, layout][batch["segment_ids"][0, layout] > 0]
        answer = batch["choice_ids"][0, j, : batch["choice_lengths"][0, j]]
        n, m = len(part_a), len(answer)
        np.testing.assert_array_equal(rows["inputs"][j, : n + m], [*part_a, TOKENS.sop, *answer[:-1]])
        np.testing.assert_array_equal(rows["targets"][j, : n + m], [0] * n + list(answer))
        width = rows["inputs"].shape[1]  # Part A slots + answer slots: 8 + 4
        np.testing.assert_array_equal(rows["loss_weights"][j], [0] * n + [1] * m + [0] * (width - n - m))
        np.testing.assert_array_equal(rows["span_ids"][j], [0] * n + [1] * 4 + [0] * (width - n - 4))
        assert rows["segment_ids"][j].tolist() == [1] * (n + 4) + [0] * (width - n - 4)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (tests/conftest.py sets XLA_FLAGS)")
def test_cloze_train_step_is_the_same_on_a_mesh_and_with_microbatches():
    """The fine-tuning objective in the pretraining trainer: 8 devices (data, fsdp, tensor = 2) and
    2 microbatches give the loss and update of one device."""
    c = config_lib.finetune_defaults()
    c.model.update(num_layers=2, hidden=32, heads=4, max_len=40, dropout=0.0, attention_dropout=0.0)
    c.data.batch_size = 8
    glm_config = GLMConfig(vocab_size=64, num_layers=2, hidden=32, heads=4, max_len=40,
                           blank_markers=TOKENS.blank_markers)  # fmt: skip
    rng = np.random.default_rng(1)
    answers = [[3, 1, 4], [2, 2], [1], [5], [2, 3], [4], [1, 1], [2]]
    layouts = [[0, 1, 0], [0, 1], [0], [0], [1, 0], [0], [0, 0], [0]]
    batch = question_batch(rng, [9, 14, 5, 20, 7, 11, 3, 16], answers, 5, layouts)
    batch["label"] = np.array([2, 0, 0, 0, 1, 0, 1, -1], np.int32)
    objective = cloze_kind.Objective(TOKENS.sop)
    results = []
    for mesh_shape, micro in (((1, 1, 1), 1), ((2, 2, 2), 2)):
        c.train.microbatches = micro
        devices = jax.devices()[: int(np.prod(mesh_shape))]
        trainer = Trainer(c, glm_config, sharding.make_mesh(*mesh_shape, devices=devices), objective=objective)
        state, metrics = trainer.train_step(trainer.init_state(0), trainer.device_batch(batch))
        results.append((float(metrics["loss"]), jax.device_get(state.params)))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), results[1][1], results[0][1])


def official_loss(logits, labels, loss_mask, loss_func: str) -> float:
    """The official `finetune_forward_step` loss (finetune_glm.py), transcribed in NumPy: padded answers
    masked to -10000, then --loss-func over the batch."""
    logits = logits * loss_mask - 10000.0 * (1.0 - loss_mask)
    rows = np.arange(len(labels))
    log_softmax = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    cross_entropy = -log_softmax[rows, labels].mean()
    if loss_func == "cross_entropy":
        return cross_entropy
    if loss_func == "hinge":
        hinge = 1 + logits - logits[rows, labels][:, None]
        hinge[hinge < 0.0] = 0.0
        return hinge.sum(1).mean() - 1.0
    generative = -logits[rows, labels].mean()
    return generative + cross_entropy if loss_func == "mix" else generative


@pytest.mark.parametrize("loss", ["ce", "cross_entropy", "hinge", "generative", "mix"])
def test_losses_equal_the_official_formulas(loss):
    """`score_sums` over answer scores (a padded answer, an unlabelled question left out), and `question_sums`
    over cloze log-probabilities with length penalty 1 (the official score: log-prob / length)."""
    scores = np.array([[-1.0, -3.0, 0.5], [-2.0, -0.2, -0.7], [-4.0, -4.5, -9.0], [0.3, -0.6, 2.0]])
    valid = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]])
    label = np.array([0, 1, 2, -1])
    official = official_loss(scores[:3], label[:3], valid[:3], "cross_entropy" if loss == "ce" else loss)
    sums = scoring.score_sums(scores, valid > 0, label, loss=loss)
    np.testing.assert_allclose(sums["loss_sum"] / sums["weight_sum"], official, rtol=1e-6)
    assert sums["weight_sum"] == 3 and sums["correct_sum"] == 1  # argmax 2, 1 (not the padded 2), 0: one right

    lengths = np.array([[2, 3, 1], [1, 4, 0], [5, 2, 2], [1, 1, 1]])
    log_probs = scores * np.maximum(lengths, 1)  # answer scores log_prob / length are `scores`
    batch = {"choice_lengths": lengths, "label": label}
    cloze = scoring.question_sums(log_probs, batch, length_penalty=1.0, loss=loss)
    np.testing.assert_allclose(cloze["loss_sum"] / cloze["weight_sum"], official, rtol=1e-6)


def test_losses_worked_example():
    """The docstring's: scores (-1, -3), gold 0; and the hinge's margin of 1."""

    def loss_of(scores, loss):
        scores = np.array([scores])
        return float(scoring.score_sums(scores, np.ones(scores.shape, bool), np.array([0]), loss=loss)["loss_sum"])

    ce = np.log1p(np.exp(-2.0))
    losses = [loss_of([-1.0, -3.0], loss) for loss in ("ce", "hinge", "generative", "mix")]
    assert losses == pytest.approx([ce, 0.0, 1.0, 1.0 + ce], rel=1e-6)
    assert loss_of([-1.0, -1.5, 0.0], "hinge") == pytest.approx(0.5 + 2.0)  # 1 + s_j - s_gold: 0.5 and 2
