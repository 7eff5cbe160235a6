"""Cloze answers scored in place by a masked LM (`finetune.cloze_style=masked_lm`): exact rows and scores."""

import flax.linen as nn
import jax
import numpy as np

from glm_jax.downstream.cloze import kind as cloze_kind
from glm_jax.downstream.cloze import masked_scoring
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.training.synthetic import TOKENS as T

CONFIG = GLMConfig(vocab_size=64, num_layers=2, hidden=32, heads=4, max_len=40, blank_markers=T.blank_markers,
                   block_positions="none")  # fmt: skip
A, B_ = 20, 21  # text tokens


def _batch():
    """Two questions: Part A `[CLS] A [M] B [eos]` (+ 2 pads); one with a verbalizer-style answer (one
    token, no eop) and a padded one, one with two candidates (tokens + eop) on layouts 1 and 0."""
    part_a = [T.cls, A, T.mask, B_, T.eos, 0, 0]
    short = [T.cls, T.mask, B_, T.eos, 0, 0, 0]  # a second, shorter layout
    inputs = np.array([[part_a, part_a], [part_a, short]], np.int32)
    segments = (inputs > 0).astype(np.int32)
    choices = np.array([[[30, 0, 0], [0, 0, 0]], [[31, 32, T.eop], [33, T.eop, 0]]], np.int32)
    return {
        "inputs": inputs,
        "segment_ids": segments,
        "choice_ids": choices,
        "choice_lengths": np.array([[1, 0], [3, 2]], np.int32),
        "choice_part_a": np.array([[0, 0], [1, 0]], np.int32),
        "label": np.array([0, 1], np.int32),
    }


def test_each_answer_gets_one_mask_per_token_in_place_of_the_blank():
    rows = {k: np.asarray(v) for k, v in masked_scoring.masked_rows(_batch(), T.mask, T.eop).items()}
    m = T.mask
    assert rows["inputs"][0].tolist() == [T.cls, A, m, B_, T.eos, 0, 0, 0, 0, 0]
    assert rows["inputs"][2].tolist() == [T.cls, m, m, B_, T.eos, 0, 0, 0, 0, 0]  # layout 1, two tokens
    assert rows["inputs"][3].tolist() == [T.cls, A, m, B_, T.eos, 0, 0, 0, 0, 0]  # layout 0, one token
    assert rows["segment_ids"][2].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert rows["positions"][2].tolist()[:2] == [1, 2] and rows["positions"][3].tolist()[:1] == [2]
    assert rows["weights"].tolist() == [[1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 0, 0]]
    assert rows["targets"][2].tolist()[:2] == [31, 32] and not np.any(rows["span_ids"])


def _by_hand(params, row, masks, targets):
    """The summed log-probabilities of `targets` at `masks` of one row, from a full bidirectional forward."""
    batch = {"inputs": np.array([row], np.int32), "span_ids": np.zeros((1, len(row)), np.int32)}
    batch["segment_ids"] = (batch["inputs"] > 0).astype(np.int32)
    logits = np.asarray(GLM(CONFIG).apply({"params": params}, batch))[0]
    log_probs = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    return sum(float(log_probs[i, t]) for i, t in zip(masks, targets, strict=True))


def test_scores_are_the_masked_log_probabilities_and_the_objective_uses_them():
    params = nn.unbox(init_params(CONFIG, jax.random.key(0), 16))
    batch = _batch()
    scores = np.asarray(masked_scoring.masked_log_probs(CONFIG, params, batch, T.mask, T.eop))
    m = T.mask
    np.testing.assert_allclose(scores[0, 0], _by_hand(params, [T.cls, A, m, B_, T.eos], [2], [30]), atol=1e-5)
    np.testing.assert_allclose(scores[1, 0], _by_hand(params, [T.cls, m, m, B_, T.eos], [1, 2], [31, 32]), atol=1e-5)
    np.testing.assert_allclose(scores[1, 1], _by_hand(params, [T.cls, A, m, B_, T.eos], [2], [33]), atol=1e-5)
    assert scores[0, 1] == 0.0
    objective = cloze_kind.Objective(T.sop, style="masked_lm", mask=T.mask, eop=T.eop)
    np.testing.assert_allclose(np.asarray(objective.scores(CONFIG, params, batch))[1], scores[1], atol=1e-6)
    sums = objective(CONFIG, params, batch)
    expected = float(jax.nn.logsumexp(scores[1]) - scores[1, 1])  # question 0 has one answer: loss 0
    np.testing.assert_allclose(float(sums["loss_sum"]), expected, atol=1e-5)
