"""Seq2seq tasks: the official layout (tasks/seq2seq/dataset.py) field by field, its cuts and the QG crop, the TFDS
builders (mocked), jsonl files and the recipes."""

import functools
import json

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import ROOT

from glm_jax.data import pipeline
from glm_jax.data.bpe import GPT2Vocabulary
from glm_jax.data.vocab import default_vocabulary
from glm_jax.data.wordpiece import BertVocabulary
from glm_jax.downstream import seq2seq
from glm_jax.downstream.seq2seq import layout

VOCAB = default_vocabulary()
TOKENS = VOCAB.command_tokens
enc = VOCAB.encode

CNNDM = {"source": "  The cat \u201csat\u201d on the mat. ", "target": "A cat sat.\nIt was happy."}
SQUAD = {
    "context": "Paris is the capital of France.  ",  # official: context.rstrip()
    "answer": "Paris",
    "question": "What is the capital of France?",
}
FILLER = "Rain fell on the quiet town all day long. "


def literal_source(examples: list[dict]) -> seqio.DataSource:
    """Every split: `examples`."""

    def dataset_fn(split, shuffle_files, seed=None):
        return functools.reduce(tf.data.Dataset.concatenate, map(tf.data.Dataset.from_tensors, examples))

    return seqio.FunctionDataSource(dataset_fn, splits=("train", "validation"))


def read(name: str, split: str = "validation", limit: int = -1) -> list[dict]:
    # no in-memory cache: it asks TFDS for the split's size, which mocked builders do not know
    ds = seqio.get_mixture_or_task(name).get_dataset(None, split=split, shuffle=False, try_in_mem_cache=False)
    return list(ds.take(limit).as_numpy_iterator())


def run(dataset: str, examples: list[dict], **options) -> list[dict]:
    return read(seq2seq.register(dataset, VOCAB, source=literal_source(examples), name=f"test_{dataset}", **options))


def expected(part_a: list[int], target: list[int]) -> dict:
    """The contract fields of Part A ids and target ids (tokens + eop, already cut), written out."""
    a = len(part_a)
    return {
        "inputs": part_a + [TOKENS.sop] + target[:-1],
        "targets": [0] * a + target,
        "loss_weights": [0] * a + [1] * len(target),
        "span_ids": [0] * a + [1] * len(target),
        "part_a": part_a,
    }


def assert_fields(ex: dict, want: dict) -> None:
    for key, value in want.items():
        assert ex[key].dtype == np.int32, key
        assert ex[key].tolist() == value, key


def test_worked_summary_example():
    (ex,) = run("cnn_dailymail", [CNNDM])
    # Part A: [CLS] [MASK] " Content:" " "+source (curly quotes made plain, stripped); B: sop " "+target (one line)
    part_a = [TOKENS.cls, TOKENS.mask, *enc(" Content:"), *enc(' The cat "sat" on the mat.')]
    target = [*enc(" A cat sat. It was happy."), TOKENS.eop]
    assert_fields(ex, expected(part_a, target))
    assert ex["reference"] == b"A cat sat.\nIt was happy."  # the highlights keep their newline
    assert VOCAB.decode(ex["inputs"].tolist()) == (
        '[CLS][MASK]  Content:  The cat "sat" on the mat.<|startofpiece|>  A cat sat. It was happy.'
    )
    assert VOCAB.decode(ex["targets"][len(part_a) :].tolist()) == " A cat sat. It was happy.<|endofpiece|>"

    (tm,) = run("cnn_dailymail", [CNNDM], task_mask=True)
    assert tm["part_a"][1] == TOKENS.smask and TOKENS.mask not in tm["inputs"].tolist()
    assert tm["inputs"].tolist() == [TOKENS.smask if i == 1 else t for i, t in enumerate(ex["inputs"].tolist())]


def test_worked_question_generation_example():
    (ex,) = run("squad_qg", [SQUAD])
    # [CLS] context.rstrip()+" Question:" [MASK] " Answer: "+answer | sop " "+question
    part_a = [TOKENS.cls, *enc("Paris is the capital of France. Question:"), TOKENS.mask, *enc(" Answer: Paris")]
    target = [*enc(" What is the capital of France?"), TOKENS.eop]
    assert_fields(ex, expected(part_a, target))
    assert ex["reference"] == b"What is the capital of France?"
    assert VOCAB.decode(ex["part_a"].tolist()) == "[CLS] Paris is the capital of France. Question:[MASK]  Answer: Paris"

    (tm,) = run("squad_qg", [SQUAD], task_mask=True)
    assert tm["part_a"].tolist() == [TOKENS.smask if t == TOKENS.mask else t for t in part_a]


def test_long_source_is_cut_to_source_len():
    long = CNNDM | {"source": FILLER * 100}
    (ex,) = run("cnn_dailymail", [long], source_len=32)
    whole = [TOKENS.cls, TOKENS.mask, *enc(" Content:"), *enc(" " + (FILLER * 100).strip())]
    assert len(whole) > 32 and ex["part_a"].tolist() == whole[:32]
    assert ex["inputs"][32] == TOKENS.sop and ex["inputs"][:32].tolist() == whole[:32]


def test_long_target_is_cut_to_target_len_as_official():
    tokens = enc(" " + FILLER * 3)
    (ex,) = run("xsum", [{"source": "a b", "target": FILLER * 3}], target_len=8)
    a = len(ex["part_a"])
    # the official cuts target + eop to max_tgt_length: eop is cut with the rest
    assert ex["targets"][a:].tolist() == tokens[:8] and TOKENS.eop not in ex["targets"].tolist()
    assert ex["loss_weights"].sum() == 8 and len(ex["inputs"]) == a + 8
    assert ex["inputs"][a:].tolist() == [TOKENS.sop, *tokens[:7]]

    fits = "One two three."
    n = len(enc(" " + fits)) + 1  # the target and its eop exactly
    (ex,) = run("xsum", [{"source": "a b", "target": fits}], target_len=n)
    assert ex["targets"][-n:].tolist() == [*enc(" " + fits), TOKENS.eop]


def official_crop(context: str, answer: str, source_len: int, answer_start: int = -1) -> list[int]:
    """Part A of the official SQuAD QG layout in plain Python (with the fallbacks of the module docstring)."""
    source = enc(context.rstrip() + " Question:")
    answer_ids = enc(" Answer: " + answer)
    budget = source_len - len(answer_ids) - 2
    if len(source) > budget:
        at = -1
        for pattern in (enc(" " + answer), enc(answer)):
            hits = [i for i in range(len(source)) if source[i : i + len(pattern)] == pattern]
            if hits:
                at = hits[0]
                break
        if at < 0 and answer_start >= 0:
            at = len(enc(context[:answer_start]))
        start = max(at - budget // 2, 0) if at >= 0 else 0
        source = source[start : start + budget]
    return [TOKENS.cls, *source, TOKENS.mask, *answer_ids]


def test_question_generation_context_is_cropped_around_the_answer():
    context = FILLER * 30 + "The ferry reached Zanzibar at noon. " + FILLER * 30
    qg = {"context": context, "answer": "Zanzibar", "question": "Where did the ferry go?"}
    (ex,) = run("squad_qg", [qg], source_len=40)
    part_a = ex["part_a"].tolist()
    assert part_a == official_crop(context, "Zanzibar", 40)
    assert len(part_a) <= 40 and part_a[0] == TOKENS.cls
    window = part_a[1 : part_a.index(TOKENS.mask)]
    zanzibar = enc("Zanzibar")
    assert any(window[i : i + len(zanzibar)] == zanzibar for i in range(len(window)))  # the answer is kept
    assert part_a[part_a.index(TOKENS.mask) + 1 :] == enc(" Answer: Zanzibar")
    assert window[0] != enc(context)[0]  # not the context's start

    # the answer near the end: the window runs to the end, " Question:" included, Part A shorter
    end = {"context": FILLER * 30 + "Then came Zanzibar.", "answer": "Zanzibar", "question": "q?"}
    (ex,) = run("squad_qg", [end], source_len=40)
    assert ex["part_a"].tolist() == official_crop(end["context"], "Zanzibar", 40)
    assert VOCAB.decode(ex["part_a"].tolist()).split("[MASK]")[0].endswith("Zanzibar. Question:")


def test_question_generation_answer_offset_fallback():
    context = FILLER * 30 + "The ferry reached Zanzibar at noon. " + FILLER * 30
    start = context.index("anzib")
    plain = {"context": context, "answer": "anzib", "question": "q?"}  # not a token sequence of the context
    with_start = plain | {"answer_start": np.int32(start)}
    (found,) = run("squad_qg", [with_start], source_len=40)
    assert found["part_a"].tolist() == official_crop(context, "anzib", 40, start)
    assert "Zanzibar" in VOCAB.decode(found["part_a"].tolist())
    (prefix,) = run("squad_qg", [plain], source_len=40)  # official: the context's first tokens
    assert prefix["part_a"].tolist() == official_crop(context, "anzib", 40)
    assert VOCAB.decode(prefix["part_a"].tolist()).startswith("[CLS] " + FILLER.strip())


def test_find():
    haystack = tf.constant([5, 1, 2, 1, 2, 3], tf.int32)
    assert layout.find(haystack, tf.constant([1, 2], tf.int32)) == 1
    assert layout.find(haystack, tf.constant([2, 3], tf.int32)) == 4
    assert layout.find(haystack, tf.constant([3, 1], tf.int32)) == -1
    assert layout.find(haystack, tf.zeros([0], tf.int32)) == -1
    assert layout.find(tf.constant([1], tf.int32), tf.constant([1, 2], tf.int32)) == -1
    assert layout.find(tf.constant([1, 2], tf.int32), tf.constant([1, 2], tf.int32)) == 0


def test_dataset_text_processing():
    giga = {"source": "-lrb- a -rrb- b &amp; c <unk> \u2018d\u2019", "target": "-lsb- x -rsb- UNK"}
    (ex,) = run("gigaword", [giga])
    # <unk> and UNK are the vocabulary's unknown id (the official writes `[UNK]`, its unknown token's text)
    head = [TOKENS.cls, TOKENS.mask, *enc(" Content:")]
    assert ex["part_a"].tolist() == [*head, *enc(" ( a ) b & c "), TOKENS.unk, *enc(" 'd'")]
    assert ex["targets"][len(ex["part_a"]) :].tolist() == [*enc(" [ x ] "), TOKENS.unk, TOKENS.eop]
    assert ex["reference"] == b"[ x ] [UNK]"
    (ex,) = run("xsum", [{"source": "Line one.\n\n  Line two.\n", "target": "Summary\nhere."}])
    assert ex["part_a"].tolist()[-len(enc(" Line one. Line two.")) :] == enc(" Line one. Line two.")
    assert ex["reference"] == b"Summary here."


BERT_VOCAB = ROOT.parent / "shared" / "vocab" / "bert-base-uncased-vocab.txt"
GPT2_VOCAB = [ROOT.parent / "shared" / "vocab" / name for name in ("gpt2-vocab.json", "gpt2-merges.txt")]


@pytest.fixture(scope="module")
def official_vocabularies():
    """The BERT WordPiece (GLM-Base/Large) and GPT-2 BPE (GLM-10B) vocabularies of ../shared/vocab."""
    missing = [str(p) for p in (BERT_VOCAB, *GPT2_VOCAB) if not p.exists()]
    if missing:
        pytest.skip(f"the real vocabularies {missing} are absent")
    return {"bert": BertVocabulary(str(BERT_VOCAB)), "gpt2": GPT2Vocabulary(*map(str, GPT2_VOCAB))}


def test_summaries_in_the_official_vocabularies(official_vocabularies):
    """CNN/DM and Gigaword examples with the BERT and GPT-2 vocabularies, through the task's tf.data map (where
    the fixed prompt was once encoded in graph mode and failed); Gigaword's unknown words as the official
    tokenizer encodes `[UNK]`: BERT's id 100, GPT-2's appended [UNK] (50257 + 5)."""
    bert, gpt2 = official_vocabularies["bert"], official_vocabularies["gpt2"]
    giga = {"source": "police arrest UNK suspects <unk> in -lrb- city -rrb-", "target": "UNK arrested"}
    for vocabulary in (bert, gpt2):
        tokens = vocabulary.command_tokens
        head = [tokens.cls, tokens.mask, *vocabulary.encode(" Content:")]
        name = seq2seq.register("cnn_dailymail", vocabulary, source=literal_source([CNNDM]), name="test_cnndm_real")
        (ex,) = read(name)
        assert ex["part_a"].tolist() == [*head, *vocabulary.encode(' The cat "sat" on the mat.')]
        name = seq2seq.register("gigaword", vocabulary, source=literal_source([giga]), name="test_giga_real")
        (ex,) = read(name)
        body = [*vocabulary.encode(" police arrest "), tokens.unk, *vocabulary.encode(" suspects "), tokens.unk,
                *vocabulary.encode(" in ( city )")]  # fmt: skip
        assert ex["part_a"].tolist() == head + body
        assert ex["targets"][len(ex["part_a"]) :].tolist() == [*vocabulary.encode(" "), tokens.unk,
                                                       *vocabulary.encode(" arrested"), tokens.eop]  # fmt: skip
    names = BERT_VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n")
    name = seq2seq.register("gigaword", bert, source=literal_source([giga]), name="test_giga_bert")
    (ex,) = read(name)
    assert " ".join(names[i] for i in ex["part_a"][2:]) == "content : police arrest [UNK] suspects [UNK] in ( city )"
    assert bert.command_tokens.unk == 100 and gpt2.command_tokens.unk == 50257 + 5


def test_part_a_padding_as_the_official_layout():
    """`pad_part_a`: Part A padded with [PAD] to source_len, the pads part of Part A; Part B unchanged."""
    (ex,) = run("cnn_dailymail", [CNNDM])
    a, n = len(ex["part_a"]), len(ex["inputs"])
    padded = {k: np.asarray(v) for k, v in seq2seq.pad_part_a(ex, source_len=a + 3, pad=TOKENS.pad).items()}
    part_a = [*ex["part_a"].tolist(), TOKENS.pad, TOKENS.pad, TOKENS.pad]
    assert_fields(padded, expected(part_a, ex["targets"][a:].tolist()))
    assert len(padded["inputs"]) == n + 3 and padded["reference"] == ex["reference"] == b"A cat sat.\nIt was happy."
    with pytest.raises(tf.errors.InvalidArgumentError, match="longer than source_len"):
        seq2seq.pad_part_a(ex, source_len=a - 1, pad=TOKENS.pad)


def test_cnn_dailymail_target_is_one_line():
    spec = seq2seq.dataset_spec("cnn_dailymail")
    ex = {"source": tf.constant(" An article. "), "target": tf.constant("First \u201cone\u201d.\n Second one.\n")}
    assert spec.source(ex).numpy() == b"An article."
    assert spec.target(ex).numpy() == b'First "one". Second one.'  # as the official one-line targets
    assert spec.reference(ex).numpy() == b'First "one".\nSecond one.'  # one highlight a line


def check_example(ex: dict, source_len: int, target_len: int) -> None:
    a = len(ex["part_a"])
    n = len(ex["inputs"])
    for key in ("inputs", "targets", "loss_weights", "span_ids", "part_a"):
        assert ex[key].dtype == np.int32 and ex[key].ndim == 1, key
    assert isinstance(ex["reference"], bytes)
    assert 3 <= a <= source_len and 1 <= n - a <= target_len
    assert all(len(ex[key]) == n for key in ("targets", "loss_weights", "span_ids"))
    assert ex["inputs"][:a].tolist() == ex["part_a"].tolist() and ex["inputs"][a] == TOKENS.sop
    assert ex["part_a"][0] == TOKENS.cls and TOKENS.mask in ex["part_a"].tolist()
    assert not ex["targets"][:a].any() and ex["loss_weights"].tolist() == ex["span_ids"].tolist() == [0] * a + [1] * (
        n - a
    )


@pytest.mark.parametrize(
    "dataset,source", [(d, "tfds") for d in seq2seq.DATASETS] + [("squad_qg", "tfds:squad/v1.1:3.0.0")]
)
def test_tfds_builders_mocked(dataset, source):
    recipe = seq2seq.SEQ2SEQ_RECIPES[dataset]
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        name = seq2seq.register(dataset, VOCAB, source=source, name=f"test_mock_{dataset}")
        for split in ("train", "validation"):
            examples = read(name, split)
            assert len(examples) == 3, split
            for ex in examples:
                check_example(ex, recipe.source_len, recipe.target_len)


def test_xsum_without_its_manual_files_says_what_to_do(monkeypatch, tmp_path):
    def missing(self, *args, **kwargs):  # what TFDS raises when the manual files are absent
        raise AssertionError(
            f"Manual directory {tmp_path}/downloads/manual does not exist or is empty. Create it and download/extract "
            "dataset artifacts in there using instructions: ..."
        )

    monkeypatch.setattr(seqio.TfdsDataSource, "get_dataset", missing)
    seqio.set_tfds_data_dir_override(str(tmp_path))
    try:
        source, _ = seq2seq.examples("xsum")
        with pytest.raises(FileNotFoundError, match=r"tfds build xsum --manual_dir DIR.*Manual directory") as error:
            source.get_dataset("train")
        assert seq2seq.XSUM_MANUAL_FILE in str(error.value)
    finally:
        seqio.set_tfds_data_dir_override(None)


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_jsonl_gives_the_same_examples(tmp_path):
    for dataset, row in (("cnn_dailymail", CNNDM), ("squad_qg", SQUAD)):
        folder = tmp_path / dataset
        folder.mkdir()
        write_jsonl(folder / "train.jsonl", [row])
        write_jsonl(folder / "validation.jsonl", [row, row])
        name = seq2seq.register(dataset, VOCAB, source=f"jsonl:{folder}", name=f"test_jsonl_{dataset}")
        (want,) = run(dataset, [row])
        (train,) = read(name, "train")
        validation = read(name, "validation")
        assert len(validation) == 2
        for ex in (train, *validation):
            assert ex.keys() == want.keys() == set(seq2seq.FIELDS)
            assert all(np.array_equal(ex[key], want[key]) for key in seq2seq.FIELDS)

    folder = tmp_path / "keys"
    folder.mkdir()
    rows = [{"article": CNNDM["source"], "summary": CNNDM["target"]}]
    for split in ("train", "validation", "test"):
        write_jsonl(folder / f"{split}.jsonl", rows)
    name = seq2seq.register(
        "cnn_dailymail", VOCAB, source=f"jsonl:{folder}", name="test_keys", source_key="article", target_key="summary"
    )
    assert read(name, "test")[0]["inputs"].tolist() == run("cnn_dailymail", [CNNDM])[0]["inputs"].tolist()

    task = seq2seq.register_pairs(
        "test_pairs", {"train": str(folder / "train.jsonl")}, VOCAB, source_len=32, target_len=8,
        source_key="article", target_key="summary",
    )  # fmt: skip
    (ex,) = read(task.name, "train")
    part_a = [TOKENS.cls, TOKENS.mask, *enc(" Content:"), *enc(" " + CNNDM["source"])]
    assert_fields(ex, expected(part_a[:32], [*enc(" " + CNNDM["target"]), TOKENS.eop][:8]))


def test_jsonl_malformed_line_names_file_and_line(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [CNNDM])
    (tmp_path / "validation.jsonl").write_text(json.dumps(CNNDM) + "\n{not json\n")
    name = seq2seq.register("cnn_dailymail", VOCAB, source=f"jsonl:{tmp_path}", name="test_malformed")
    with pytest.raises(Exception, match=r"validation\.jsonl:2"):
        read(name, "validation")
    write_jsonl(tmp_path / "validation.jsonl", [CNNDM, {"source": "only a source"}])
    with pytest.raises(Exception, match=r"validation\.jsonl:2: not a JSON object with keys \['source', 'target'\]"):
        read(name, "validation")
    (tmp_path / "validation.jsonl").unlink()
    with pytest.raises(ValueError, match="validation.jsonl"):
        seq2seq.register("cnn_dailymail", VOCAB, source=f"jsonl:{tmp_path}")


def test_contract_rows_through_the_feature_converter():
    name = seq2seq.register("cnn_dailymail", VOCAB, source=literal_source([CNNDM, CNNDM]), name="test_rows")
    (ex, _) = read(name)
    n = len(ex["inputs"])
    length = 2 * n + 3
    rows = pipeline.get_dataset(name, "validation", length, seed=0, shuffle=False, repeat=False, pack=True)
    (row,) = rows.as_numpy_iterator()  # both examples packed in one row
    for key in ("inputs", "targets", "loss_weights", "span_ids"):
        assert row[key][:n].tolist() == row[key][n : 2 * n].tolist() == ex[key].tolist(), key
        assert not row[key][2 * n :].any()
    assert row["segment_ids"].tolist() == [1] * n + [2] * n + [0] * 3


def test_register_rejects_unknown_dataset_and_tiny_lengths():
    with pytest.raises(ValueError, match="'cnn_dailymail', 'xsum', 'gigaword', 'squad_qg'"):
        seq2seq.register("cnn_dm", VOCAB)
    with pytest.raises(ValueError, match="source_len=4"):
        seq2seq.register("xsum", VOCAB, source=literal_source([CNNDM]), source_len=4)
    with pytest.raises(ValueError, match="target_len=0"):
        seq2seq.register("xsum", VOCAB, source=literal_source([CNNDM]), target_len=0)
    with pytest.raises(ValueError, match="'tfds', 'tfds:BUILDER', 'jsonl:DIR'"):
        seq2seq.register("xsum", VOCAB, source="csv:/tmp")


def test_recipes():
    assert set(seq2seq.SEQ2SEQ_RECIPES) == set(seq2seq.DATASETS)
    r = seq2seq.SEQ2SEQ_RECIPES
    assert (r["cnn_dailymail"].source_len, r["cnn_dailymail"].target_len, r["cnn_dailymail"].min_target_len) == (
        608, 160, 55,
    )  # fmt: skip
    assert (r["xsum"].num_beams, r["xsum"].length_penalty, r["xsum"].lr, r["xsum"].epochs) == (6, 1.0, 1e-5, 6)
    assert (r["gigaword"].source_len, r["gigaword"].target_len, r["gigaword"].batch_size) == (192, 32, 16)
    assert (r["squad_qg"].metric, r["squad_qg"].no_repeat_ngram_size, r["squad_qg"].lr) == ("bleu", 0, 2e-5)
    assert all(x.warmup == 0.06 and x.weight_decay == 0.1 and x.label_smoothing == 0.1 for x in r.values())
