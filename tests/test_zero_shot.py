"""Zero-shot evaluation: windows, rows and masks of both settings, scores against a hand computation,
last-word accuracy, text from SeqIO, and the CLI's argument errors and output."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from glm_jax import config as config_lib
from glm_jax import evaluate, workdir
from glm_jax.data import sources, vocab
from glm_jax.downstream import zero_shot
from glm_jax.model.glm import GLM, init_params
from glm_jax.model.layout import dense_mask, layout

TOKENS = vocab.default_vocabulary().command_tokens
CLS, MASK, SOP = TOKENS.cls, TOKENS.mask, TOKENS.sop


def small_config():
    c = config_lib.load_config_file("configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 32, 2
    c.data.seq_len = 16
    return c


@pytest.fixture(scope="module")
def tiny():
    """A trainer of a 2-layer, 32-wide model, random parameters and a scorer of 8-row batches."""
    trainer, _ = workdir.trainer_for(small_config())
    params = trainer.fresh_params(3)
    return trainer, params, zero_shot.ZeroShotScorer(trainer, 8)


def test_windows_of_a_document():
    doc = list(range(100, 110))
    assert zero_shot.lm_windows(doc, 4, 2) == [
        ([100], [101, 102, 103]),
        ([102, 103], [104, 105]),
        ([104, 105], [106, 107]),
        ([106, 107], [108, 109]),
    ]
    assert zero_shot.lm_windows(doc[:9], 4, 3) == [
        ([100], [101, 102, 103]),
        ([103], [104, 105, 106]),
        ([106], [107, 108]),
    ]
    assert zero_shot.lm_windows(doc[:3], 4, 2) == [([100], [101, 102])]
    assert zero_shot.lm_windows(doc[:1], 4, 2) == [] and zero_shot.lm_windows([], 4, 2) == []
    with pytest.raises(ValueError, match="stride=4"):
        zero_shot.lm_windows(doc, 4, 4)


def test_every_token_scored_once_after_its_full_context():
    for n in range(0, 25):
        doc = list(range(1000, 1000 + n))
        for window in range(2, 7):
            for stride in range(1, window):
                windows = zero_shot.lm_windows(doc, window, stride)
                assert sum((scored for _, scored in windows), []) == doc[1:]
                assert all(len(c) + len(s) <= window for c, s in windows)
                start = 1
                for k, (context, scored) in enumerate(windows):
                    assert context == (doc[:1] if k == 0 else doc[start - (window - stride) : start])
                    start += len(scored)


def _mask(row, markers):
    out = layout({k: v[None] for k, v in row.items()}, markers)
    return dense_mask(out.segment_ids, out.last_visible)[0, 0]


def test_rows_of_both_settings_and_their_masks():
    bi = zero_shot.example_row(*zero_shot.split_example([20, 21, 22], [23, 24], "bidirectional"), 2, TOKENS, 8)
    uni = zero_shot.example_row(*zero_shot.split_example([20, 21, 22], [23, 24], "unidirectional"), 2, TOKENS, 8)
    np.testing.assert_array_equal(bi["inputs"], [CLS, 20, 21, 22, MASK, SOP, 23, 0])
    np.testing.assert_array_equal(bi["targets"], [0, 0, 0, 0, 0, 23, 24, 0])
    np.testing.assert_array_equal(bi["span_ids"], [0, 0, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(uni["inputs"], [CLS, 20, MASK, SOP, 21, 22, 23, 0])
    np.testing.assert_array_equal(uni["targets"], [0, 0, 0, 21, 22, 23, 24, 0])
    np.testing.assert_array_equal(uni["span_ids"], [0, 0, 0, 1, 1, 1, 1, 0])
    for row in (bi, uni):
        np.testing.assert_array_equal(row["loss_weights"], [0, 0, 0, 0, 0, 1, 1, 0])
        np.testing.assert_array_equal(row["segment_ids"], [1] * 7 + [0])

    def expected_mask(part_a):  # Part A sees itself; Part B sees Part A and itself causally; no padding
        q, k = np.arange(8)[:, None], np.arange(8)[None, :]
        return (q < 7) & (k < 7) & ((k < part_a) | (k <= q))

    markers = TOKENS.blank_markers
    for row, part_a, positions in ((bi, 5, [0, 1, 2, 3, 4, 4, 4, 0]), (uni, 3, [0, 1, 2, 2, 2, 2, 2, 0])):
        np.testing.assert_array_equal(_mask(row, markers), expected_mask(part_a))
        np.testing.assert_array_equal(layout({k: v[None] for k, v in row.items()}, markers).positions[0], positions)
    # The context token 21 sees the later context token 22 only in the bidirectional setting.
    assert bool(_mask(bi, markers)[2, 3])
    assert not bool(_mask(uni, markers)[4, 5])
    np.testing.assert_array_equal(
        layout({k: v[None] for k, v in uni.items()}, markers).block_positions[0], [0, 0, 0, 1, 2, 3, 4, 0]
    )
    with pytest.raises(ValueError, match="does not fit"):
        zero_shot.example_row([1, 2, 3], [4, 5], 2, TOKENS, 6)


def test_perplexity_equals_a_hand_computation(tiny):
    trainer, params, scorer = tiny
    d = [40, 41, 42, 43, 44, 45]  # window 4, stride 2: (d0 | d1 d2 d3), (d2 d3 | d4 d5)
    rows = {
        "bidirectional": [
            ([CLS, d[0], MASK, SOP, d[1], d[2]], [0, 0, 0, d[1], d[2], d[3]], [0, 0, 0, 1, 1, 1]),
            ([CLS, d[2], d[3], MASK, SOP, d[4]], [0, 0, 0, 0, d[4], d[5]], [0, 0, 0, 0, 1, 1]),
        ],
        "unidirectional": [
            ([CLS, d[0], MASK, SOP, d[1], d[2]], [0, 0, 0, d[1], d[2], d[3]], [0, 0, 0, 1, 1, 1]),
            ([CLS, d[2], MASK, SOP, d[3], d[4]], [0, 0, 0, d[3], d[4], d[5]], [0, 0, 0, 0, 1, 1]),
        ],
    }
    apply = jax.jit(GLM(trainer.glm_config).apply)
    host_params = jax.device_get(params)
    nll = {}
    for setting, hand_rows in rows.items():
        total = 0.0
        for inputs, targets, weights in hand_rows:
            a = sum(1 for t in targets if t == 0)
            batch = {
                "inputs": np.array([inputs], np.int32),
                "segment_ids": np.ones((1, 6), np.int32),
                "span_ids": np.array([[0] * a + [1] * (6 - a)], np.int32),
            }
            logits = apply({"params": host_params}, batch)
            log_p = np.asarray(jax.nn.log_softmax(logits[0]))
            total -= sum(log_p[i, t] for i, (t, w) in enumerate(zip(targets, weights, strict=True)) if w)
        got = zero_shot.perplexity(scorer, params, [d], setting=setting, window=4, stride=2, tokens=TOKENS)
        assert got["tokens"] == 5 and got["windows"] == 2
        np.testing.assert_allclose(got["nll"], total / 5, rtol=1e-5)
        np.testing.assert_allclose(got["perplexity"], np.exp(total / 5), rtol=1e-5)
        nll[setting] = got["nll"]
    assert abs(nll["bidirectional"] - nll["unidirectional"]) > 1e-4  # d3 as context vs as Part B input


def test_last_word_counts_only_if_every_token_is_the_argmax(tiny):
    trainer, params, scorer = tiny
    context = [50, 51, 52]
    # Row `[CLS] c [MASK] sop w1` (bidirectional): position 5 predicts w1, position 6 predicts w2.
    host_params = jax.device_get(params)
    apply = jax.jit(GLM(trainer.glm_config).apply)

    def argmax_after(first):
        batch = {
            "inputs": np.array([[CLS, *context, MASK, SOP, first]], np.int32),
            "segment_ids": np.ones((1, 7), np.int32),
            "span_ids": np.array([[0] * 5 + [1, 1]], np.int32),
        }
        logits = np.asarray(apply({"params": host_params}, batch))[0]
        return int(logits[5].argmax()), int(logits[6].argmax())

    w1, _ = argmax_after(0)
    _, w2 = argmax_after(w1)
    other = next(t for t in range(60, 70) if t != w1)
    _, w2_after_other = argmax_after(other)
    examples = [
        (context, [w1, w2]),  # both tokens argmax: correct
        (context, [w1, w2 + 1]),  # second token wrong
        (context, [other, w2_after_other]),  # first token wrong, second argmax
        (context, [w1]),  # one-token word: correct
    ]
    got = zero_shot.lambada_accuracy(scorer, params, examples, setting="bidirectional", length=8, tokens=TOKENS)
    assert (got["correct"], got["words"]) == (2, 4)
    np.testing.assert_allclose(got["token_accuracy"], 5 / 7)


def test_last_words_of_text():
    v = vocab.default_vocabulary()
    context, word = zero_shot.last_word_example("The quick brown fox jumps over the lazy dog.", v)
    assert v.decode(context) == "The quick brown fox jumps over the lazy" and v.decode(word) == "dog"
    assert zero_shot.last_word_example("Too short here", v, min_words=3) is None
    assert zero_shot.last_word_example("Nothing at all ...", v) == (v.encode("Nothing at"), v.encode("all"))
    assert zero_shot.last_word_example("!!!", v) is None
    examples = zero_shot.lambada_examples(["One two three four.\n\n  \nFive six seven", "eight"], v, min_words=2)
    assert [v.decode(w) for _, w in examples] == ["four", "seven"]


def test_text_task_reads_any_source(tmp_path):
    texts = ["A first document, short.", "And a second one with the word zebra"]
    (tmp_path / "lambada.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    v = vocab.default_vocabulary()
    zero_shot.register_text_task("test_zero_shot_text", sources.jsonl_files({"test": str(tmp_path / "*.jsonl")}), v)
    documents = zero_shot.read_documents("test_zero_shot_text", "test")
    assert documents == [(t, list(v.encode(t))) for t in texts]
    assert zero_shot.read_documents("test_zero_shot_text", "test", max_documents=1) == documents[:1]


def test_argument_errors():
    ok = dict(window=0, stride=0, max_documents=0, batch_size=0, min_words=1)
    for bad, message in (
        (dict(window=1), "--window=1"),
        (dict(window=8, stride=8), "--stride=8"),
        (dict(stride=-1), "--stride=-1"),
        (dict(max_documents=-2), "--max_documents=-2"),
        (dict(min_words=0), "--lambada_min_words=0"),
    ):
        with pytest.raises(ValueError, match=message):
            evaluate.check_numbers(**{**ok, **bad})
    with pytest.raises(ValueError, match="is not one of"):
        evaluate.parse_source("bogus", "validation")
    with pytest.raises(ValueError, match="no file matches"):
        evaluate.parse_source("jsonl:/nonexistent/*.jsonl", "test")
    with pytest.raises(ValueError, match="splits"):
        evaluate.parse_source("default", "test")
    c = small_config()
    assert evaluate.resolve_window(c, 0, 0) == (14, 7)
    with pytest.raises(ValueError, match="largest position, 16"):
        evaluate.resolve_window(c, 17, 0)
    with pytest.raises(ValueError, match="--stride=16"):
        evaluate.resolve_window(c, 16, 16)


def _cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "glm_jax.evaluate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(__file__)),
        timeout=300,
    )


def test_cli_prints_trained_and_fresh_numbers(tmp_path):
    c = small_config()
    trainer, _ = workdir.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(7), 16)))
    workdir.write(str(tmp_path / "w"), c, params)
    text = "Return the value of the named attribute of object.\n\nThe name must be a string; if it is one of"
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": text}) + "\n")
    bad = _cli(f"--workdir={tmp_path / 'w'}", "--window=8", "--stride=8")
    assert bad.returncode != 0 and "--stride=8 must be in [1, window - 1]" in bad.stderr
    out = _cli(
        f"--workdir={tmp_path / 'w'}",
        f"--source=jsonl:{tmp_path / 'd.jsonl'}",
        "--split=test",
        "--window=8",
        "--stride=3",
        "--lambada_min_words=3",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "test: 1 documents" in lines[0] and "2 last words" in lines[0]
    assert sum("perplexity" in line for line in lines) == 4 and sum("last word " in line for line in lines) == 4
    assert sum(line.startswith("trained (step 0)") for line in lines) == 4
    assert sum(line.startswith("fresh init (seed 0)") for line in lines) == 4
