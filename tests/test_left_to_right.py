"""The GPT baseline downstream (`model.causal`): answers scored left to right in place of the blank,
prompts continued after their last token with the KV cache, zero-shot rows, and the checks that keep
a causal model off the paths that need a bidirectional one."""

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from glm_jax import config as config_lib
from glm_jax.downstream import finetuning_job, zero_shot
from glm_jax.downstream.cloze import kind as cloze_kind
from glm_jax.downstream.cloze import masked_scoring
from glm_jax.downstream.decoding import DecodeOptions, Decoder, Prompts
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.training.synthetic import TOKENS as T

CONFIG = GLMConfig(vocab_size=64, num_layers=2, hidden=32, heads=4, max_len=40, blank_markers=T.blank_markers,
                   block_positions="none", causal=True)  # fmt: skip
A, B_ = 20, 21


def _params(seed=0):
    return nn.unbox(init_params(CONFIG, jax.random.key(seed), 16))


def _questions():
    """Two questions, `[CLS] A [M] B [eos]` and a shorter layout `[CLS] [M] B [eos]`: a one-token
    answer and a padded one; two candidates with eop on layouts 1 and 0."""
    part_a = [T.cls, A, T.mask, B_, T.eos, 0, 0]
    short = [T.cls, T.mask, B_, T.eos, 0, 0, 0]
    inputs = np.array([[part_a, part_a], [part_a, short]], np.int32)
    return {
        "inputs": inputs,
        "segment_ids": (inputs > 0).astype(np.int32),
        "choice_ids": np.array([[[30, 0, 0], [0, 0, 0]], [[31, 32, T.eop], [33, T.eop, 0]]], np.int32),
        "choice_lengths": np.array([[1, 0], [3, 2]], np.int32),
        "choice_part_a": np.array([[0, 0], [1, 0]], np.int32),
        "label": np.array([0, 1], np.int32),
    }


def test_answers_stand_in_the_blank_and_everything_from_them_on_is_scored():
    rows = {k: np.asarray(v) for k, v in masked_scoring.left_to_right_rows(_questions(), T.mask, T.eop).items()}
    assert rows["inputs"][0].tolist() == [T.cls, A, 30, B_, T.eos, 0, 0, 0, 0, 0]
    assert rows["inputs"][2].tolist() == [T.cls, 31, 32, B_, T.eos, 0, 0, 0, 0, 0]  # layout 1, eop dropped
    assert rows["inputs"][3].tolist() == [T.cls, A, 33, B_, T.eos, 0, 0, 0, 0, 0]
    assert rows["targets"][2].tolist()[:4] == [31, 32, B_, T.eos]
    # weights sit where the target is the answer's first token or later, up to the row's last token
    assert rows["weights"][0].tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert rows["weights"][2].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert not np.any(rows["span_ids"])


def _by_hand(params, row, first_scored):
    """Summed log-probabilities of `row[first_scored:]`, each token from a causal forward over the row."""
    batch = {"inputs": np.array([row], np.int32), "span_ids": np.zeros((1, len(row)), np.int32)}
    batch["segment_ids"] = np.ones_like(batch["inputs"])
    logits = np.asarray(GLM(CONFIG).apply({"params": params}, batch))[0]
    log_probs = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    return sum(float(log_probs[i - 1, row[i]]) for i in range(first_scored, len(row)))


def test_scores_are_left_to_right_log_probabilities_and_ignore_what_follows_the_row():
    params = _params()
    batch = _questions()
    scores = np.asarray(masked_scoring.left_to_right_log_probs(CONFIG, params, batch, T.mask, T.eop))
    np.testing.assert_allclose(scores[0, 0], _by_hand(params, [T.cls, A, 30, B_, T.eos], 2), atol=1e-5)
    np.testing.assert_allclose(scores[1, 0], _by_hand(params, [T.cls, 31, 32, B_, T.eos], 1), atol=1e-5)
    np.testing.assert_allclose(scores[1, 1], _by_hand(params, [T.cls, A, 33, B_, T.eos], 2), atol=1e-5)
    assert scores[0, 1] == 0.0
    objective = cloze_kind.Objective(T.sop, style="left_to_right", mask=T.mask, eop=T.eop)
    np.testing.assert_allclose(np.asarray(objective.scores(CONFIG, params, batch))[1], scores[1], atol=1e-6)
    # causal: a token's score does not move when a later token of the row changes
    changed = dict(batch, inputs=batch["inputs"].copy())
    changed["inputs"][0, 0, 4] = 40  # [eos] -> 40 in question 0: its answer's own log-prob stays
    first = lambda b: masked_scoring.left_to_right_rows(b, T.mask, T.eop)  # noqa: E731
    logits = [np.asarray(GLM(CONFIG).apply({"params": params}, {k: first(b)[k][:1] for k in ("inputs", "segment_ids",
              "span_ids")}))[0, 1] for b in (batch, changed)]  # fmt: skip
    np.testing.assert_allclose(logits[0], logits[1], atol=1e-6)


def test_cached_continuation_equals_the_full_causal_forward():
    """Greedy continuation with the KV cache: each token the argmax of a full causal forward over the
    prompt and the tokens so far (positions numbered on), until eop or the limit."""
    params = jax.tree_util.tree_map_with_path(lambda p, x: x * 6.0 if p[-1].key == "kernel" else x, _params(1))
    source = [[T.cls, T.mask, 20, 21, 22], [T.cls, 30, 31, T.mask]]
    prompts = Prompts(source, T, pad_to=6, wrap=False)
    fills, lengths = Decoder(CONFIG, T, DecodeOptions(max_new_tokens=5)).fill(params, prompts)
    assert fills.shape == (2, 1, 5)
    for b, row in enumerate(source):
        tokens = [*row, T.sop]
        for step in range(int(lengths[b, 0]) + (lengths[b, 0] < 5)):
            batch = {"inputs": np.array([tokens], np.int32), "span_ids": np.zeros((1, len(tokens)), np.int32)}
            batch["span_ids"][0, len(row) :] = 1  # Part B, numbered on after Part A by a causal layout
            batch["segment_ids"] = np.ones_like(batch["inputs"])
            best = int(np.asarray(GLM(CONFIG).apply({"params": params}, batch))[0, -1].argmax())
            if step == lengths[b, 0]:
                assert best == T.eop
            else:
                assert best == fills[b, 0, step]
                tokens.append(best)


def test_zero_shot_rows_of_a_left_to_right_model():
    row = zero_shot.left_to_right_row([11, 12, 13], [14, 15], 8)
    assert row["inputs"].tolist() == [11, 12, 13, 14, 0, 0, 0, 0]
    assert row["targets"].tolist() == [12, 13, 14, 15, 0, 0, 0, 0]
    assert row["loss_weights"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0]
    assert row["segment_ids"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and not row["span_ids"].any()
    rows = list(zero_shot.lm_rows([[11, 12, 13, 14, 15, 16]], setting="unidirectional", window=4, stride=2,
                                  tokens=T, causal=True))  # fmt: skip
    scored = [r["targets"][r["loss_weights"] > 0].tolist() for r in rows]
    assert scored == [[12, 13, 14], [15, 16]]  # every token but the first, once, as for GLM
    with pytest.raises(ValueError, match="unidirectional setting only"):
        list(zero_shot.lm_rows([[11, 12, 13]], setting="bidirectional", window=4, stride=2, tokens=T, causal=True))


def _config(**finetune) -> ml_collections.ConfigDict:
    c = config_lib.finetune_defaults()
    c.model.causal, c.model.max_len = True, 512
    c.finetune.task = "some_task"
    for key, value in finetune.items():
        c.finetune[key] = value
    return c


@pytest.mark.parametrize(
    "finetune, message",
    [
        ({}, r"cloze_style=left_to_right, and only it does \(model.causal=True, cloze_style='glm'\)"),
        ({"kind": "classify"}, "the classifier pools a row"),
        ({"kind": "seq2seq", "task": "", "seq2seq": "blank", "metric": "bleu"}, "fills no blanks"),
        ({"kind": "seq2seq", "pad_part_a": True, "metric": "rouge"}, "takes no padding"),
    ],
)
def test_a_causal_model_is_kept_off_what_needs_a_bidirectional_one(finetune, message):
    with pytest.raises(ValueError, match=message):
        finetuning_job.check(_config(**finetune))
    finetuning_job.check(_config(cloze_style="left_to_right"))  # the one style it has


def test_prompts_of_a_left_to_right_model_are_taken_as_they_are():
    prompts = Prompts([[20, 21], [30]], T, causal=True)
    assert prompts.rows == [[20, 21], [30]] and prompts.continuation().tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="continues its prompt: give text without blanks"):
        Prompts([[20, T.mask, 21]], T, causal=True)
