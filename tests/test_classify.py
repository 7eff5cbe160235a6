"""Sequence-classifier fine-tuning (`finetune.kind=classify`): the official rows of every SuperGLUE task on
worked examples, their cut, the pool token, logits and loss against the NumPy official model, the head's
initialization, and fine-tuning end to end."""

import flax.linen as nn
import jax
import numpy as np
import numpy_glm
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import ROOT
from test_finetune import init_dir, read_jsonl, tiny_config, tiny_source  # noqa: F401 - init_dir is a fixture
from test_superglue import EXAMPLES, bert, literal_source, pieces  # noqa: F401 - bert, pieces are fixtures

from glm_jax import config as config_lib
from glm_jax.data import pipeline, vocab
from glm_jax.downstream import classify
from glm_jax.downstream import finetuning_job as finetune
from glm_jax.downstream.classify import model, rows
from glm_jax.downstream.classify import superglue as classify_superglue
from glm_jax.downstream.classify.kind import ClassifyKind
from glm_jax.model.glm import GLMConfig, init_params
from glm_jax.official import mapping
from glm_jax.training.synthetic import TOKENS

TASK = "test_tiny_sentiment_classify"
SENTIMENT = classify.Classifier(lambda ex, _: ([ex["text"]], []), labels=("bad", "good"))
classify.register_classify_task(TASK, tiny_source(), vocab.default_vocabulary(), SENTIMENT)

# The official rows of the worked examples (tests/test_superglue.py), as BERT pieces ([PAD] is BERT's eos).
WORKED = {
    "boolq": ["[CLS] bar ##q ' s - bar ##q ' s is an american soft drink . its brand of root beer is notable for "
              "having caf ##fe ##ine . [SEP] is bar ##q ' s root beer a pepsi product [PAD]"],
    "cb": ["[CLS] b : what do you think , do you think we are , setting a trend ? [SEP] they are setting a trend "
           "[PAD]"],
    "copa": ["[CLS] my body cast a shadow over the grass . because [SEP] the sun was rising . [PAD]",
             "[CLS] my body cast a shadow over the grass . because [SEP] the grass was cut . [PAD]"],
    "multirc": ["[CLS] susan wanted to have a birthday party . her first friend could not go to the party because she "
                "was sick . [SEP] did susan ' s sick friend recover ? answer : yes , she recovered [PAD]"],
    "record": [
        "[CLS] ( cnn ) puerto rico on sunday overwhelmingly voted for statehood . but congress , the only body that "
        "can approve new states , will ultimately decide whether the status of the us commonwealth changes . - puerto "
        "rico voted sunday in favor of us statehood [SEP] for one , they can truth ##fully say , \" don ' t blame me , "
        f"i didn ' t vote for them , \" when discussing the @ place ##holder presidency {entity} [PAD]"
        for entity in ("cnn", "congress", "puerto rico", "us")
    ],
    "rte": ["[CLS] dana reeve , the widow of the actor christopher reeve , has died of lung cancer at age 44 , "
            "according to the christopher reeve foundation . [SEP] christopher reeve had an accident . [PAD]"],
    "wic": ["[CLS] board : room and board . [SEP] he nailed boards across the windows . [PAD]"],
    "wsc": ["[CLS] mark told pete many lies about himself , which pete included in his book . * he * should have been "
            "more truth ##ful . [SEP] pete [PAD]"],
}  # fmt: skip
LABELS = {"boolq": [0], "cb": [2], "copa": [0], "multirc": [1, 0], "record": [3], "rte": [1], "wic": [0], "wsc": [0, 1]}


def classify_questions(task, vocabulary, split="validation", seq_len=256) -> list[dict]:
    name = classify_superglue.register(task, vocabulary, source=literal_source(EXAMPLES[task]), name=f"test_{task}")
    ds = seqio.get_mixture_or_task(name).get_dataset(
        {"inputs": seq_len}, split=split, shuffle=False, trim_output_features=False
    )
    return list(ds.as_numpy_iterator())


def row_pieces(question, as_pieces) -> list[str]:
    ends = np.cumsum(question["row_lengths"])
    return [as_pieces(question["inputs"][end - n : end]) for n, end in zip(question["row_lengths"], ends, strict=True)]


@pytest.mark.parametrize("task", classify_superglue.CLASSIFIERS)
def test_worked_example_rows(task, bert, pieces):  # noqa: F811
    qs = classify_questions(task, bert)
    assert row_pieces(qs[0], pieces) == WORKED[task]
    assert [q["label"] for q in qs] == LABELS[task]
    assert all(q["truncated"] == 0 for q in qs)
    if task == "record":
        assert list(qs[0]["choice_texts"]) == [b"CNN", b"Congress", b"Puerto Rico", b"US"]
        assert list(qs[0]["answers"]) == [b"US"] and qs[0]["group"] == 2_000_005
    else:  # the class names (COPA: its choices)
        assert len(qs[0]["choice_texts"]) == (2 if task == "copa" else len(classify_superglue.CLASSIFIERS[task].labels))


def test_train_splits(bert, pieces):  # noqa: F811
    """COPA mirrored, ReCoRD the gold first, and WSC keeping its False examples (unlike the cloze recipe)."""
    original, mirror = classify_questions("copa", bert, split="train")
    assert row_pieces(mirror, pieces) == WORKED["copa"][::-1] and (original["label"], mirror["label"]) == (0, 1)
    (record,) = classify_questions("record", bert, split="train")
    assert list(record["choice_texts"]) == [b"US", b"CNN", b"Congress", b"Puerto Rico"] and record["label"] == 0
    assert [q["label"] for q in classify_questions("wsc", bert, split="train")] == [0, 1]


def official_build_input_from_ids(a, b, seq_len):
    """The official `build_input_from_ids(a, b, None, seq_len, add_cls=True, add_sep=True)` ids, and whether
    `SuperGlueDataset` counts the example as truncated."""
    ids = [TOKENS.cls, *a, TOKENS.sep, *b]
    if len(ids) >= seq_len - 1:
        ids = ids[: seq_len - 1]
    return [*ids, TOKENS.eos], len(a) + len(b) + 3 > seq_len


def test_rows_cut_as_the_official_build_input_from_ids():
    rng = np.random.default_rng(0)
    for _ in range(30):
        seq_len = int(rng.integers(4, 12))
        a, b = ([int(t) for t in rng.integers(11, 60, rng.integers(0, 10))] for _ in range(2))
        ragged = lambda ids: tf.ragged.constant([ids], dtype=tf.int32, ragged_rank=1)  # noqa: E731
        got, truncated = rows.official_rows(ragged(a), ragged(b), TOKENS, seq_len)
        expected, cut = official_build_input_from_ids(a, b, seq_len)
        assert got.to_list() == [expected] and bool(truncated[0]) == cut


def test_pool_positions_worked_example():
    """The module docstring's row: [CLS] a1 a2 [SEP] b1 [eos] pad pad (sep 6), and an empty row."""
    segment_ids = np.array([[1, 1, 1, 1, 1, 1, 0, 0], [0] * 8])
    assert {t: model.pool_positions(segment_ids, t).tolist() for t in model.POOL_TOKENS} == {
        "cls": [0, 0],
        "start": [6, 0],
        "pad": [5, 0],
    }


CONFIG = GLMConfig(vocab_size=64, num_layers=2, hidden=16, heads=2, max_len=16, blank_markers=TOKENS.blank_markers)


@pytest.mark.parametrize("pool_token", model.POOL_TOKENS)
def test_logits_and_loss_equal_the_numpy_official_model(pool_token):
    """Questions of 2 rows (multiple choice) and a head of 2 outputs: the logits are the official
    classifier's (the NumPy official model's hidden state at the pool token, then the head by hand), and the
    loss is the cross-entropy over the real ones (question 1 has one row, question 2 no label)."""
    rng = np.random.default_rng(1)
    seps = np.array([[7, 4], [9, 0], [3, 5]])  # tokens per row; an empty row
    b, r, length = 3, 2, 10
    inputs = rng.integers(11, 64, (b, r, length)).astype(np.int32)
    segment_ids = (np.arange(length) < seps[..., None]).astype(np.int32)
    inputs = np.where(segment_ids > 0, inputs, 0)
    batch = {"inputs": inputs, "segment_ids": segment_ids, "label": np.array([2, 1, -1], np.int32),
             "choice_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], np.int32)}  # fmt: skip
    objective = model.Objective(pool_token, TOKENS.eos, outputs=2)
    params = nn.unbox(init_params(CONFIG, jax.random.key(0), length))
    head_params = objective.head(CONFIG).init(jax.random.key(1), np.zeros((1, 16), np.float32))["params"]
    params[model.HEAD] = nn.unbox(head_params)
    logits = np.asarray(objective.logits(CONFIG, params, batch))

    # The official batch: eos padding at positions 0, block positions 0, mask key < sep or key <= query.
    sep = seps.reshape(-1)
    index = np.arange(length)
    tokens = np.where(index < sep[:, None], inputs.reshape(-1, length), TOKENS.eos)
    position_ids = np.stack([np.where(index < sep[:, None], index, 0), np.zeros((b * r, length), int)], axis=1)
    sd = mapping.to_official({k: v for k, v in params.items() if k != model.HEAD})
    hidden = numpy_glm.forward(sd, CONFIG.heads, tokens, position_ids, sep, return_hidden=True)
    where = {"cls": 0 * sep, "pad": np.maximum(sep - 1, 0), "start": sep}[pool_token]
    pooled = hidden[np.arange(b * r), where]
    head = {k: {n: np.asarray(v, np.float64) for n, v in p.items()} for k, p in params[model.HEAD].items()}
    h = np.tanh(pooled @ head["pool_layer"]["kernel"] + head["pool_layer"]["bias"])
    expected = (h @ head["multichoice_head"]["kernel"] + head["multichoice_head"]["bias"]).reshape(b, r * 2)
    real = batch["choice_mask"] > 0  # an empty row's state is padding's: the official one differs, and is unused
    np.testing.assert_allclose(logits[real], expected[real], atol=2e-5)

    sums = objective(CONFIG, params, batch)
    masked = np.where(batch["choice_mask"] > 0, expected, -np.inf)
    by_hand = sum(np.logaddexp.reduce(masked[i]) - masked[i, y] for i, y in ((0, 2), (1, 1)))
    np.testing.assert_allclose(sums["loss_sum"], by_hand, rtol=1e-5)
    assert sums["weight_sum"] == 2


def test_head_starts_as_torch_linear():
    """Weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default `Linear`, as the official head."""
    hidden = 256
    params = model.Head(3).init(jax.random.key(0), np.zeros((1, hidden), np.float32))["params"]
    bound = hidden**-0.5
    kernel = np.asarray(nn.unbox(params["pool_layer"]["kernel"]))
    assert kernel.shape == (hidden, hidden) and np.abs(kernel).max() <= bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.02)  # a uniform's std
    assert nn.unbox(params["multichoice_head"]["kernel"]).shape == (hidden, 3)
    biases = [np.asarray(nn.unbox(layer["bias"])) for layer in params.values()]
    assert all(np.abs(bias).max() <= bound for bias in biases)
    np.testing.assert_allclose(biases[0].std(), bound / np.sqrt(3), rtol=0.15)


def classify_config(**finetune):
    c = tiny_config()
    c.finetune.update(kind="classify", task=TASK, **finetune)
    return c


def test_finetunes_writes_predictions_and_keeps_the_best(init_dir, tmp_path):  # noqa: F811
    workdir = tmp_path / "run"
    scores = finetune.run(classify_config(epochs=1), init_dir, str(workdir))
    assert set(scores) == {"accuracy", "truncated"}
    records = read_jsonl(workdir / "predictions_validation.jsonl")
    assert len(records) == 10 and all(r["choices"] == ["bad", "good"] and len(r["scores"]) == 2 for r in records)
    assert [p.name for p in (workdir / "best").iterdir() if p.name.isdigit()] == ["3"]  # 24 questions / 8
    assert finetune.run(None, "", str(workdir), eval_only=True) == scores  # the head comes back from best/


def test_multiple_choice_batches():
    """COPA (mocked TFDS) as the kind batches it: a row per choice, one padding token kept for `start`."""
    c = classify_config(pool_token="start")
    c.finetune.update(task="", superglue="copa", metric="copa")
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        (batch,) = ClassifyKind(c, vocab.default_vocabulary()).eval_data()
    assert batch["inputs"].shape == (8, 2, 32) and batch["choice_mask"].tolist() == [[1, 1]] * 4 + [[0, 0]] * 4
    assert batch["segment_ids"][:4].sum(-1).max() == 31 and batch["label"].tolist()[4:] == [-1] * 4


def test_demo_rows_hold_each_choice_in_the_summary():
    c = config_lib.load_config_file(ROOT / "configs/finetune/demo_choice_classify.py")
    pipeline.import_task_module(c.finetune.task_module)
    task = seqio.get_mixture_or_task(c.finetune.task)
    (question,) = task.get_dataset({"inputs": c.data.seq_len}, split="validation", trim_output_features=False).take(1)
    rows_ids = np.split(question["inputs"].numpy(), np.cumsum(question["row_lengths"])[:-1])
    tokens = vocab.command_tokens(vocab.default_vocabulary())
    assert len(rows_ids) == 4 and all([ids[0], ids[-1]] == [tokens.cls, tokens.eos] for ids in rows_ids)
    texts = [vocab.default_vocabulary().decode(ids.tolist()) for ids in rows_ids]  # `summary [SEP] body`
    choices = [choice.decode() for choice in question["choice_texts"].numpy()]
    assert all(choice in text.split("[SEP]")[0] for choice, text in zip(choices, texts, strict=True))


def test_config_errors(init_dir, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="finetune.pool_token must be one of"):
        finetune.run(classify_config(pool_token="mean"), init_dir, str(tmp_path / "a"))
    with pytest.raises(ValueError, match="finetune.task='test_tiny_sentiment' is not a classify task"):
        c = classify_config()
        c.finetune.task = "test_tiny_sentiment"  # a cloze task
        finetune.run(c, init_dir, str(tmp_path / "b"))
