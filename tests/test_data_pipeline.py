"""The default corpus, the vocabulary, the registered task and the batches it yields."""

import re

import numpy as np
import pytest
import seqio
import tensorflow as tf

from glm_jax.config import DEFAULT_TASK
from glm_jax.data import corpus, pipeline, sources, tasks, vocab
from glm_jax.data.command_tokens import PIECES

SEQ_LEN = 64


def test_corpus_splits_are_disjoint_real_text():
    train, validation = corpus.documents("train"), corpus.documents("validation")
    assert len(train) > 300 and len(validation) > 20
    assert not set(train) & set(validation)
    assert sum(map(len, train)) > 1_000_000
    words = re.findall(r"[a-z]+", " ".join(validation).lower())
    assert {"the", "of", "return", "is"} <= set(words)
    with pytest.raises(ValueError, match="Unknown split 'test'"):
        corpus.documents("test")


def test_parsed_corpus_is_cached_exactly_and_a_damaged_cache_is_parsed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parsed = corpus._stdlib_docstrings.__wrapped__()  # no cache file yet: parses and writes it
    (cache,) = (tmp_path / "glm_jax").glob("stdlib_docstrings_*.json")
    assert corpus._stdlib_docstrings.__wrapped__() == parsed  # read back from the file
    cache.write_text('{"module:x.py": ["not the corpus"')  # torn
    assert corpus._stdlib_docstrings.__wrapped__() == parsed
    assert len(parsed) > 500 and parsed["module:json/__init__.py"][0].startswith("JSON (JavaScript Object Notation)")


def test_command_tokens_have_fixed_ids():
    tokens = vocab.command_tokens(vocab.default_vocabulary())
    assert (tokens.pad, tokens.eos, tokens.unk) == (0, 1, 2)
    assert [getattr(tokens, name) for name in PIECES] == list(range(3, 3 + len(PIECES)))


def test_vocabulary_round_trips_text_in_tf_graph():
    v = vocab.default_vocabulary()
    text = "Return the [MASK] of the items, e.g. sum(x) for x in range(10)."
    ids = v.encode_tf(tf.constant(text))
    assert 5 in ids.numpy().tolist()  # [MASK] is one piece
    assert v.decode_tf(ids).numpy().decode() == text
    assert v.decode(v.encode("plain ascii words")) == "plain ascii words"


def test_task_is_registered_with_contract_features():
    task = seqio.get_mixture_or_task(DEFAULT_TASK)
    assert set(task.output_features) == {"inputs", "targets", "loss_weights", "span_ids"}


def _first_batches(seed, count=3, shard_info=None):
    stream = pipeline.TrainStream(DEFAULT_TASK, SEQ_LEN, 4, seed=seed, shard_info=shard_info)
    return [next(stream) for _ in range(count)]


def test_batches_follow_the_contract():
    for batch in _first_batches(0):
        assert set(batch) == {"inputs", "targets", "loss_weights", "segment_ids", "span_ids"}
        for value in batch.values():
            assert value.shape == (4, SEQ_LEN) and value.dtype == np.int32
        real = batch["segment_ids"] > 0
        assert np.all(batch["loss_weights"] == (batch["span_ids"] > 0))
        assert np.all(batch["inputs"][~real] == 0) and np.all(batch["span_ids"][~real] == 0)
        assert np.all(batch["inputs"][:, 0] == 3)  # every row starts with [CLS]
        # Segment ids are 1 on a prefix of each row, then 0.
        assert np.all(np.diff(batch["segment_ids"], axis=1) <= 0)


def test_same_seed_same_batches_other_seed_other_batches():
    a, b, c = _first_batches(3), _first_batches(3), _first_batches(4)
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(a[0]["inputs"], c[0]["inputs"])


def test_stream_position_skips_exactly():
    full = _first_batches(5, count=4)
    resumed = pipeline.TrainStream(DEFAULT_TASK, SEQ_LEN, 4, seed=5, position=2)
    for expected in full[2:]:
        np.testing.assert_array_equal(next(resumed)["inputs"], expected["inputs"])
    assert resumed.position == 4


def test_shards_see_different_documents():
    """Documents carry an id word; each shard's examples come only from its own documents."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    documents = [f"{w} " * 40 for w in words]

    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_tensor_slices({"text": documents})

    source = seqio.FunctionDataSource(dataset_fn, splits=["train"])
    tasks.register_pretraining_task("test_sharded_documents", source, vocab.default_vocabulary())
    v = vocab.default_vocabulary()
    seen = []
    for index in range(2):
        ds = pipeline.get_dataset(
            "test_sharded_documents",
            "train",
            SEQ_LEN,
            seed=0,
            shuffle=False,
            repeat=False,
            shard_info=seqio.ShardInfo(index=index, num_shards=2),
        )
        text = " ".join(
            v.decode(ex["inputs"].tolist()) + v.decode(ex["targets"].tolist()) for ex in ds.as_numpy_iterator()
        )
        seen.append({w for w in words if w in text})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(words)


def test_fixed_batches_pad_the_last_batch():
    batches = pipeline.fixed_batches(DEFAULT_TASK, "validation", SEQ_LEN, 64, seed=0)
    rows = np.concatenate([b["segment_ids"][:, 0] for b in batches])
    assert rows[-1] == 0 or len(rows) % 64 == 0
    assert all(b["inputs"].shape == (64, SEQ_LEN) for b in batches)
    assert len(pipeline.fixed_batches(DEFAULT_TASK, "validation", SEQ_LEN, 8, seed=0, limit=2)) == 2


def test_unknown_task_names_the_fix():
    with pytest.raises(ValueError, match="not registered.*task_module"):
        pipeline.get_task("no_such_task")
    with pytest.raises(ValueError, match="could not be imported"):
        pipeline.import_task_module("no_such_module_xyz")


def test_default_source_shuffles_by_seed():
    source = sources.default_corpus_source()
    first = lambda seed: next(iter(source.get_dataset("validation", shuffle=True, seed=seed)))["text"].numpy()  # noqa: E731
    assert first(1) == first(1)
    assert len({first(s) for s in range(5)}) > 1
