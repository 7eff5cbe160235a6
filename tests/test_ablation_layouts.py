"""The paper's variants and baselines, laid out as the official code lays them out (issue 23, parts 1-2).

Each example below is made by our objective; its spans and Part B order are read back from it, and
`official_block_data` / `official_masked_data` (the official `blocklm_utils.py`'s
`make_block_data` / `make_masked_data`, rewritten here from their description, given the spans and
order instead of drawing them) lay out the same text. Tokens, targets where scored, loss mask,
positions and block positions (ours from the model's `layout` under the variant's `Scheme`) must be
equal; then the model's logits on our example equal the NumPy forward of the official model
(`numpy_glm`) on the official one.
"""

import flax.linen as nn
import jax
import numpy as np
import numpy_glm
import pytest
import tensorflow as tf

from glm_jax.contract import CommandTokens, sentinel_tokens
from glm_jax.data import objectives, tasks
from glm_jax.data.objectives import LeftToRight, MaskedLM, ShortSpans, VocabInfo
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.model.layout import Scheme, layout
from glm_jax.official import mapping

T = CommandTokens(pad=0, eos=1, unk=2, cls=3, sep=4, mask=5, smask=6, gmask=7, sop=8, eop=9, dblock=10)
VOCAB = 200  # text ids 11..199; sentinel pairs from 200
INFO = VocabInfo(tokens=T, sentence_ends=np.zeros(VOCAB, bool), vocab_size=VOCAB)
SEQ_LEN = 64


def _rows(num: int, seed: int):
    """`num` rows of [CLS] + random text, some holding two documents (an eos inside)."""
    rng = np.random.default_rng(seed)
    n = ShortSpans().text_length(SEQ_LEN)
    rows = []
    for i in range(num):
        length = int(rng.integers(n // 2, n + 1))
        text = rng.integers(11, VOCAB, length - 1).tolist()
        if i % 3 == 0:
            text[length // 2] = T.eos
        rows.append([T.cls, *text])
    return rows


def _make(objective, rows, seed=0):
    texts = tf.ragged.constant(rows, tf.int32, row_splits_dtype=tf.int32)
    out = objective(texts, tf.constant([seed, 1]), SEQ_LEN, INFO, False)
    return [{k: np.array(v.to_list()[i]) for k, v in out.items()} for i in range(len(rows))]


def _spans_and_order(row, example, markers):
    """The spans (start, end) of `row` in text order and the Part B order, read from `example`."""
    spans_b = example["span_ids"][example["span_ids"] > 0]
    pieces = [int(s) for i, s in enumerate(spans_b) if i == 0 or s != spans_b[i - 1]]
    lengths = {s: int(np.sum(spans_b == s)) - 1 for s in pieces}  # sop + the span's tokens
    spans, at = [], 0
    for token in example["inputs"][example["span_ids"] == 0]:
        if token in markers:
            spans.append((at, at + lengths[len(spans) + 1]))
            at = spans[-1][1]
        else:
            at += 1
    assert at == len(row)
    return spans, [s - 1 for s in pieces]


def official_block_data(tokens, spans, order, *, sentinel=False, block_position=True, max_len=SEQ_LEN, bias=0):
    """`make_block_data` (task 'bert') for text `tokens`, `spans` (start, end) in text order and Part
    B listing `spans[order[0]]` first: (tokens, targets, loss mask, positions, block positions, sep)."""
    position_ids = np.ones(len(tokens), np.int64)
    for start, end in spans:
        position_ids[start + 1 : end] = 0
    position_ids = np.cumsum(position_ids) - 1 + bias
    place = {span: i for i, span in enumerate(order)}  # a span's place in Part B: its sentinel pair
    ids = lambda i: (T.mask, T.sop) if not sentinel or i == 0 else sentinel_tokens(VOCAB, i)  # noqa: E731
    b_tokens, b_targets, b_positions, b_blocks = [], [], [], []
    for i, s in enumerate(order):
        start, end = spans[s]
        b_tokens += [ids(i)[1], *tokens[start:end]]
        b_targets += [*tokens[start:end], T.eop]
        b_positions += [max_len if sentinel else position_ids[start]] * (end - start + 1)
        b_blocks += list(range(1, end - start + 2)) if block_position else [1] * (end - start + 1)
    a_tokens, a_positions, last = [], [], 0
    for s, (start, end) in enumerate(spans):
        a_tokens += [*tokens[last:start], ids(place[s])[0]]
        a_positions += [*position_ids[last:start], position_ids[start]]
        last = end
    a_tokens += tokens[last:]
    a_positions += list(position_ids[last:])
    sep = len(a_tokens)
    return (
        np.array(a_tokens + b_tokens),
        np.array(a_tokens + b_targets),
        np.array([0] * sep + [1] * len(b_tokens)),
        np.array(a_positions + b_positions),
        np.array([0] * sep + b_blocks),
        sep,
    )


def official_masked_data(tokens, spans):
    """`make_masked_data`: (tokens, targets, loss mask, positions); every token sees the whole row."""
    masked = np.zeros(len(tokens), bool)
    for start, end in spans:
        masked[start:end] = True
    return np.where(masked, T.mask, tokens), np.array(tokens), masked.astype(int), np.arange(len(tokens))


def _layout(example, scheme, noise=None):
    batch = {k: example[k][None] for k in ("inputs", "span_ids")} | {
        "segment_ids": np.ones((1, len(example["inputs"])))
    }
    batch = {k: np.asarray(v, np.int32) for k, v in batch.items()}
    return jax.tree.map(lambda x: np.asarray(x)[0], layout(batch, T.blank_markers, scheme, noise))


def _assert_official(example, official, scheme, noise=None):
    tokens, targets, loss, positions, blocks, sep = official
    np.testing.assert_array_equal(example["inputs"], tokens)
    np.testing.assert_array_equal(example["loss_weights"], loss)
    np.testing.assert_array_equal(example["targets"][loss > 0], targets[loss > 0])
    ours = _layout(example, scheme, noise)
    np.testing.assert_array_equal(ours.positions, positions)
    np.testing.assert_array_equal(ours.block_positions, blocks)
    np.testing.assert_array_equal(
        ours.last_visible, np.where(np.arange(len(tokens)) < sep, sep - 1, np.arange(len(tokens)))
    )


SENTINEL_MARKERS = {T.mask} | {sentinel_tokens(VOCAB, i)[0] for i in range(1, SEQ_LEN)}
VARIANTS = {  # name: (objective, model scheme, official switches)
    "glm": (ShortSpans(), Scheme(), {}),
    "no_shuffle": (ShortSpans(shuffle=False), Scheme(), {}),
    "sentinel": (ShortSpans(sentinels=True), Scheme(sentinel_position=SEQ_LEN), {"sentinel": True}),
    "no_block_position": (ShortSpans(), Scheme(block="constant"), {"block_position": False}),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_lay_out_as_the_official_make_block_data(name):
    objective, scheme, switches = VARIANTS[name]
    markers = SENTINEL_MARKERS if switches.get("sentinel") else {T.mask}
    rows = _rows(24, seed=1)
    orders = []
    for row, example in zip(rows, _make(objective, rows), strict=True):
        spans, order = _spans_and_order(row, example, markers)
        orders.append(order)
        _assert_official(example, official_block_data(row, spans, order, **switches), scheme)
    shuffled = sum(order != sorted(order) for order in orders)
    if name == "no_shuffle":
        assert shuffled == 0
    else:
        assert shuffled >= 12  # rows of several spans are almost always out of text order


def test_sentinel_examples_use_a_pair_per_part_b_place():
    """The span first in Part B keeps [MASK] / sop; the i-th takes [MASK{i}] / sop{i}, ids after the vocabulary."""
    row = _rows(3, seed=5)[1]
    (example,) = _make(ShortSpans(sentinels=True), [row])
    spans, order = _spans_and_order(row, example, SENTINEL_MARKERS)
    assert len(spans) >= 3
    ids = example["span_ids"]
    opens = [i for i in range(len(ids)) if ids[i] > 0 and ids[i] != ids[i - 1]]
    assert example["inputs"][opens].tolist() == [T.sop] + [VOCAB + 2 * i - 1 for i in range(1, len(spans))]
    markers = [t for t in example["inputs"][ids == 0] if t in SENTINEL_MARKERS]
    assert sorted(markers) == [T.mask] + [VOCAB + 2 * (i - 1) for i in range(1, len(spans))]
    assert markers[order[0]] == T.mask  # the span first in Part B


def test_random_start_positions_as_the_official():
    """Every position of an example moves by one bias, U{0 .. max_len - 1 - its last Part A position}."""
    row = _rows(3, seed=2)[0]
    (example,) = _make(ShortSpans(), [row])
    spans, order = _spans_and_order(row, example, {T.mask})
    last = official_block_data(row, spans, order)[3][official_block_data(row, spans, order)[5] - 1]
    room = SEQ_LEN - last
    noise = np.random.default_rng(0).uniform(size=(4000, 1))
    biases = []
    for u in noise[:200]:
        ours = _layout(example, Scheme(max_position=SEQ_LEN), np.full((1, len(example["inputs"])), u[0]))
        bias = int(ours.positions[0])
        biases.append(bias)
        _assert_official(example, official_block_data(row, spans, order, bias=bias), Scheme(max_position=SEQ_LEN),
                         np.full((1, len(example["inputs"])), u[0]))  # fmt: skip
    # The bias of uniform noise is uniform over 0..room-1 (room = max_len - last Part A position).
    all_biases = np.floor(noise[:, 0] * room).astype(int)
    assert all_biases.min() == 0 and all_biases.max() == room - 1 and max(biases) < room
    counts = np.bincount(all_biases, minlength=room)
    assert np.all(np.abs(counts - 4000 / room) < 5 * np.sqrt(4000 / room))


def test_masked_lm_lays_out_as_the_official_make_masked_data():
    rows = _rows(24, seed=3)
    fractions = []
    for row, example in zip(rows, _make(MaskedLM(), rows), strict=True):
        masked = example["loss_weights"] > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], masked.astype(int), [0]])))
        spans = list(zip(edges[::2], edges[1::2], strict=True))
        tokens, targets, loss, positions = official_masked_data(row, spans)
        np.testing.assert_array_equal(example["inputs"], tokens)
        np.testing.assert_array_equal(example["loss_weights"], loss)
        np.testing.assert_array_equal(example["targets"][masked], targets[masked])
        assert not np.any(example["span_ids"]) and not any(T.eos in row[s:e] for s, e in spans)
        ours = _layout(example, Scheme(block="none"))
        np.testing.assert_array_equal(ours.positions, positions)
        np.testing.assert_array_equal(ours.block_positions, 0)
        np.testing.assert_array_equal(ours.last_visible, len(row) - 1)  # the whole row, both ways
        fractions.append(masked.sum() / (len(row) - 1))
    assert 0.15 <= np.mean(fractions) < 0.25


def test_left_to_right_lm_is_the_whole_row_causal():
    rows = _rows(4, seed=4)
    for row, example in zip(rows, _make(LeftToRight(), rows), strict=True):
        np.testing.assert_array_equal(example["inputs"], row[:-1])
        np.testing.assert_array_equal(example["targets"], row[1:])
        np.testing.assert_array_equal(example["loss_weights"], 1)
        ours = _layout(example, Scheme(block="none", causal=True))
        np.testing.assert_array_equal(ours.positions, np.arange(len(row) - 1))
        np.testing.assert_array_equal(ours.last_visible, np.arange(len(row) - 1))


def _logits_equal_official(config, example, official_tokens, official_positions, sep):
    params = nn.unbox(init_params(config, jax.random.key(0), 16))
    batch = {k: np.asarray(example[k], np.int32)[None] for k in ("inputs", "span_ids")}
    batch["segment_ids"] = np.ones_like(batch["inputs"])
    ours = np.asarray(GLM(config).apply({"params": params}, batch))[0]
    state_dict = mapping.to_official(params)
    state_dict.setdefault("transformer.block_position_embeddings.weight", np.zeros((config.max_len + 1, config.hidden)))
    expected = numpy_glm.forward(state_dict, config.heads, official_tokens[None], official_positions[None], [sep])[0]
    np.testing.assert_allclose(ours, expected, atol=2e-4)


MODEL = dict(vocab_size=VOCAB + 2 * SEQ_LEN, num_layers=2, hidden=32, heads=4, max_len=SEQ_LEN,
             blank_markers=T.blank_markers)  # fmt: skip


@pytest.mark.parametrize("name", ["glm", "sentinel", "no_block_position"])
def test_model_logits_equal_the_official_model_on_the_official_layout(name):
    objective, scheme, switches = VARIANTS[name]
    config = GLMConfig(**MODEL, sentinel_positions=scheme.sentinel_position >= 0, block_positions=scheme.block)
    row = _rows(3, seed=6)[0]
    (example,) = _make(objective, [row])
    spans, order = _spans_and_order(row, example, SENTINEL_MARKERS if switches.get("sentinel") else {T.mask})
    tokens, _, _, positions, blocks, sep = official_block_data(row, spans, order, **switches)
    _logits_equal_official(config, example, tokens, np.stack([positions, blocks]), sep)


def test_baseline_models_equal_the_official_bidirectional_and_causal_models():
    row = _rows(3, seed=7)[0]
    (masked,) = _make(MaskedLM(), [row])
    n = len(row)
    bert = GLMConfig(**MODEL, block_positions="none")
    assert "block_position_embeddings" not in init_params(bert, jax.random.key(0), 16)
    _logits_equal_official(bert, masked, masked["inputs"], np.stack([np.arange(n), np.zeros(n, int)]), n)
    (lm,) = _make(LeftToRight(), [row])
    gpt = GLMConfig(**MODEL, block_positions="none", causal=True)
    _logits_equal_official(gpt, lm, lm["inputs"], np.stack([np.arange(n - 1), np.zeros(n - 1, int)]), 1)


def test_a_task_names_the_model_setting_it_needs():
    assert tasks.max_scored("glm_default_lm", 128) == 128
    assert tasks.max_scored("glm_default_masked_lm", 128) == 58  # ceil(.15 * 128) = 20; 20 - 1 + 39
    tasks.check_model("glm_default_sentinel", causal=False, sentinel_positions=True)
    with pytest.raises(ValueError, match=r"glm_default_lm.*LeftToRight.*--config.model.causal=True"):
        tasks.check_model("glm_default_lm", causal=False, sentinel_positions=False)
    with pytest.raises(ValueError, match=r"with sentinel tokens.*--config.model.sentinel_positions=True"):
        tasks.check_model("glm_default_sentinel", causal=False, sentinel_positions=False)
    with pytest.raises(ValueError, match=r"--config.model.causal=False"):
        tasks.check_model("glm_default_short_spans", causal=True, sentinel_positions=False)
    assert {type(o) for o in tasks.objectives("glm_default_doc")} == {ShortSpans, objectives.DocumentLevel}
