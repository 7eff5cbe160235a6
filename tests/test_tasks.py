"""Task API, sources, rows, mixtures and packing, through the real SeqIO pipeline."""

import collections
import json

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from glm_jax.data import pipeline, preprocessors, sources, tasks, vocab
from glm_jax.data.objectives import ShortSpans
from glm_jax.model.layout import dense_mask, layout

V = vocab.default_vocabulary()
T = V.command_tokens
SEQ_LEN = 64


def _function_source(documents):
    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_tensor_slices({"text": documents})

    return seqio.FunctionDataSource(dataset_fn, splits=["train", "validation"])


def _examples(task, split="train", pack=False, limit=None):
    ds = pipeline.get_dataset(task, split, SEQ_LEN, seed=0, shuffle=False, repeat=False, pack=pack)
    return list(ds.take(limit or -1).as_numpy_iterator())


def _row_text(example):
    """The row an example was made from: Part A with each blank replaced by its Part B span."""
    real = example["segment_ids"] > 0
    fills = collections.defaultdict(list)
    for target, span in zip(example["targets"], example["span_ids"], strict=True):
        if span and target != T.eop:
            fills[span].append(int(target))
    text, blank = [], 0
    for token in example["inputs"][real & (example["span_ids"] == 0)]:
        if token in T.blank_markers:
            blank += 1
            text += fills[blank]
        else:
            text.append(int(token))
    return text


DOCS = [f"document {i}: " + " ".join(f"w{i}x{j}" for j in range(3 + 7 * i)) for i in range(12)]


@pytest.mark.parametrize("short_seq_prob", [0.0, 0.5])
def test_rows_keep_every_token(short_seq_prob):
    tasks.register_pretraining_task("test_rows", _function_source(DOCS), V, short_seq_prob=short_seq_prob)
    rows = [_row_text(ex) for ex in _examples("test_rows")]
    assert all(row[0] == T.cls for row in rows)
    stream = [t for row in rows for t in row[1:]]
    expected = [t for doc in DOCS for t in V.encode(doc) + [T.eos]]
    assert stream == expected
    full = ShortSpans().text_length(SEQ_LEN)
    lengths = [len(r) for r in rows]
    assert max(lengths) == full
    if short_seq_prob:
        assert sum(length < full for length in lengths[:-1]) >= 3  # some rows shortened on purpose


def test_long_documents_are_grouped_in_pieces_and_keep_every_token(monkeypatch):
    """A document counts as one group member per `PIECE_TOKENS` (a 5 MB document made groups of 64
    copies of itself); with 4-token pieces the 12 documents fill several groups, each ending in a
    shorter row, and the rows still hold every token in order."""
    monkeypatch.setattr(preprocessors, "PIECE_TOKENS", 4)
    tasks.register_pretraining_task("test_rows_pieces", _function_source(DOCS), V)
    rows = [_row_text(ex) for ex in _examples("test_rows_pieces")]
    assert [t for row in rows for t in row[1:]] == [t for doc in DOCS for t in V.encode(doc) + [T.eos]]
    pieces = sum(-(-(len(V.encode(doc)) + 1) // 4) for doc in DOCS)
    full = ShortSpans().text_length(SEQ_LEN)
    assert pieces > 2 * 64 and sum(len(row) < full for row in rows) == -(-pieces // 64)  # one tail per group


def test_rows_without_cls_and_one_document_per_row():
    tasks.register_pretraining_task("test_rows_plain", _function_source(DOCS[:4]), V, add_cls=False, concatenate=False)
    rows = [_row_text(ex) for ex in _examples("test_rows_plain")]
    assert [t for row in rows for t in row] == [t for doc in DOCS[:4] for t in V.encode(doc) + [T.eos]]
    assert all(T.eos not in row[:-1] for row in rows)  # no row holds parts of two documents
    assert sum(row[-1] == T.eos for row in rows) == 4 and len(rows) > 4  # a long document spans rows


def test_text_and_jsonl_file_sources(tmp_path):
    for i, doc in enumerate(DOCS[:4]):
        (tmp_path / f"doc{i}.txt").write_text(doc)
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"body": d}) for d in DOCS[4:7]) + "\n")
    tasks.register_pretraining_task("test_txt", sources.text_files({"train": str(tmp_path / "*.txt")}), V)
    tasks.register_pretraining_task("test_jsonl", sources.jsonl_files({"train": str(tmp_path / "*.jsonl")}, "body"), V)
    for name, docs in (("test_txt", DOCS[:4]), ("test_jsonl", DOCS[4:7])):
        stream = [t for ex in _examples(name) for t in _row_text(ex)[1:]]
        chunks = np.split(np.array(stream), np.flatnonzero(np.array(stream) == T.eos) + 1)
        assert sorted(V.decode([t for t in chunk if t != T.eos]) for chunk in chunks if len(chunk)) == sorted(docs)


def test_mixture_rates_are_as_configured():
    counts = collections.Counter()
    ds = pipeline.get_dataset("glm_default_10b", "train", 128, seed=0, shuffle=True, repeat=True)
    for ex in ds.take(10_000).as_numpy_iterator():
        markers = set(ex["inputs"][ex["span_ids"] == 0].tolist()) & set(T.blank_markers)
        assert len(markers) == 1
        counts[markers.pop()] += 1
    total = sum(counts.values())
    assert abs(counts[T.mask] / total - 0.5) <= 0.02
    assert abs(counts[T.smask] / total - 0.3) <= 0.02
    assert abs(counts[T.gmask] / total - 0.2) <= 0.02


def test_packing_keeps_examples_whole_and_separate():
    docs = [" ".join(f"t{i}y{j}" for j in range(1 + i % 4)) for i in range(30)]
    tasks.register_pretraining_task("test_pack", _function_source(docs), V, concatenate=False)
    single, packed = _examples("test_pack"), _examples("test_pack", pack=True)
    assert len(packed) < len(single) / 2
    assert sum(row["segment_ids"].max() >= 2 for row in packed) >= len(packed) - 1  # all but the last are shared
    unpacked = []
    for row in packed:
        segments = row["segment_ids"]
        for s in range(1, segments.max() + 1):
            unpacked.append({k: v[segments == s] for k, v in row.items()})
    for a, b in zip(unpacked, single, strict=True):
        for k in ("inputs", "targets", "loss_weights", "span_ids"):
            np.testing.assert_array_equal(a[k], b[k][b["segment_ids"] > 0])
    # The model's in-jit mask never lets a token see another example of its row.
    batch = {k: np.stack([row[k] for row in packed]) for k in ("inputs", "segment_ids", "span_ids")}
    derived = jax.jit(layout, static_argnums=1)(batch, T.blank_markers)
    mask = np.asarray(dense_mask(derived.segment_ids, derived.last_visible)[:, 0])
    seg = batch["segment_ids"]
    across = seg[:, :, None] != seg[:, None, :]
    assert not mask[across].any()
    assert mask[(seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0)].any()


def test_task_module_registers_user_tasks(tmp_path, monkeypatch):
    (tmp_path / "my_glm_tasks.py").write_text(
        "from glm_jax.data import sources, tasks, vocab\n"
        "tasks.register_pretraining_task('my_task', sources.default_corpus_source(), vocab.default_vocabulary())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pipeline.import_task_module("my_glm_tasks")
    assert pipeline.get_task("my_task").name == "my_task"


@pytest.fixture(scope="module")
def tfds_metadata(tmp_path_factory):
    """Dataset metadata for the mocked TFDS builders (mock_data makes up the examples)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    for name in ("c4/en:3.1.0", "wikipedia/20230601.en:1.0.0"):
        builder = tfds.builder(name, data_dir=str(data_dir))
        splits = [tfds.core.SplitInfo(name=s, shard_lengths=[12], num_bytes=0) for s in ("train", "validation")]
        builder.info.set_splits(tfds.core.SplitDict(splits))
        tf.io.gfile.makedirs(builder.data_dir)
        builder.info.write_to_directory(builder.data_dir)
    return str(data_dir)


@pytest.mark.parametrize("task", ["glm_c4_short_spans", "glm_wikipedia_10b"])
def test_builtin_tfds_tasks(tfds_metadata, task):
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=tfds_metadata):
        examples = _examples(task, limit=8)
    assert len(examples) >= 2
    for ex in examples:
        assert ex["inputs"][0] == T.cls and ex["loss_weights"].sum() > 0
