"""Bad input data gets clear errors (or is skipped, binary text files), and the file sources'
iterators can be saved and restored exactly (tf.data iterator checkpoints)."""

import gzip
import json
import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

from glm_jax import evaluate, generate, workdir
from glm_jax.data import pipeline, sources, tasks, vocab

V = vocab.default_vocabulary()
SEQ_LEN = 64
CHINESE = "这是一个中文文档，用于测试。GLM 模型的预训练数据可以包含任何 UTF-8 文本。"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


def _rows(name: str, split: str = "train"):
    return pipeline.get_dataset(name, split, SEQ_LEN, seed=0, shuffle=False, repeat=False)


def _documents(source, split="train"):
    return [ex["text"].decode("utf-8") for ex in source.get_dataset(split, shuffle=False).as_numpy_iterator()]


# ---------------------------------------------------------------------------------------------------
# Text files: binary files are skipped with a warning naming them.


def test_binary_files_among_text_files_are_skipped_with_a_warning(tmp_path, caplog):
    docs = ["The first plain document.", CHINESE, "Une troisième, accentuée : déjà vu."]
    for i, doc in enumerate(docs):
        (tmp_path / f"doc{i}.txt").write_text(doc, encoding="utf-8")
    (tmp_path / "archive.txt").write_bytes(gzip.compress(b"compressed text " * 20))
    (tmp_path / "image.txt").write_bytes(PNG)
    (tmp_path / "nul.txt").write_bytes(b"looks like text\x00but holds a NUL")
    source = sources.text_files({"train": str(tmp_path / "*.txt")})
    with caplog.at_level(logging.WARNING):
        assert sorted(_documents(source)) == sorted(docs)  # valid text, Chinese included, passes unchanged
        assert sorted(_documents(source)) == sorted(docs)  # a second pass warns no more
    warnings = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
    assert len(warnings) == 3, warnings
    for name, reason in (("archive.txt", "not UTF-8 text: byte 0x8b"), ("image.txt", "not UTF-8 text: byte 0x89"),
                         ("nul.txt", "not text: a NUL byte at offset 15")):  # fmt: skip
        (message,) = [w for w in warnings if name in w]
        assert reason in message
    assert warnings[-1].endswith("3 text file(s) skipped so far.")
    assert {p.rsplit("/", 1)[-1] for p in source.skipped_files} == {"archive.txt", "image.txt", "nul.txt"}
    # Through a registered task and the pipeline: the Chinese document's rows decode back to it.
    tasks.register_pretraining_task("test_bad_text", sources.text_files({"train": str(tmp_path / "doc1.txt")}), V)
    assert pipeline.count(_rows("test_bad_text")) >= 1
    tasks.register_pretraining_task("test_bad_text_all", sources.text_files({"train": str(tmp_path / "*.txt")}), V)
    assert pipeline.count(_rows("test_bad_text_all")) >= 3


def test_text_problem_and_is_text_agree():
    samples = [b"", b"plain", CHINESE.encode(), "\ufffd replacement char".encode(), b"\xef\xbb\xbfBOM", b"a\x00b",
               b"\xff\xfe", b"\xed\xa0\x80", b"caf\xe9", PNG, gzip.compress(b"x")]  # fmt: skip
    for data in samples:
        assert bool(sources.is_text(tf.constant(data))) == (sources.text_problem(data) == ""), data
    assert [sources.text_problem(d) == "" for d in samples[:5]] == [True] * 5


# ---------------------------------------------------------------------------------------------------
# JSON lines: every kind of bad line is one ValueError naming file:line, through the pipeline.

GOOD = json.dumps({"text": "A good line."}) + "\n"
BAD_LINES = {
    "not_json": (GOOD + "{text: 'single quotes'}\n", 2, "not JSON: Expecting property name"),
    "not_object": (GOOD + GOOD + '["a", "list"]\n', 3, "not a JSON object with keys ['text']: a list"),
    "a_string": ('"just a string"\n', 1, "not a JSON object with keys ['text']: a string"),
    "missing_key": (GOOD + "\n\n" + '{"body": "x"}\n', 4, "no key 'text' (its keys: ['body'])"),
    "wrong_type": (GOOD + '{"text": 42}\n', 2, "key 'text' holds a number, not a string"),
    "null": ('{"text": null}\n', 1, "key 'text' holds null, not a string"),
    "nul_char": (GOOD + '{"text": "bin\\u0000ary"}\n', 2, "key 'text' holds a NUL character"),
    "surrogate": ('{"text": "half \\ud800 pair"}\n', 1, "unpaired surrogate"),
    "truncated_last_line": (GOOD * 3 + '{"text": "cut in the mid', 4, "(the line ends early: truncated?)"),
}


def _write_bad(tmp_path, name):
    content, _, _ = BAD_LINES[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_bad_jsonl_line_is_one_value_error_naming_file_and_line(tmp_path, name):
    path = _write_bad(tmp_path, name)
    _, line, what = BAD_LINES[name]
    tasks.register_pretraining_task(f"test_bad_{name}", sources.jsonl_files({"train": str(path)}), V)
    with pytest.raises(ValueError) as caught:
        pipeline.count(_rows(f"test_bad_{name}"))
    message = str(caught.value)
    assert isinstance(caught.value, sources.DataError)
    assert message.startswith(f"{path}:{line}: ") and what in message and "\n" not in message, message
    assert "Traceback" not in message and "PyFunc" not in message


def test_non_utf8_and_binary_jsonl_files(tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes(GOOD.encode() + '{"text": "café"}\n'.encode("latin-1"))
    (tmp_path / "packed.jsonl").write_bytes(gzip.compress(GOOD.encode() * 50))
    for name, expected in (("latin1", ":2: not UTF-8 text: byte 0xe9 at column 14 (invalid continuation byte)"),
                           ("packed", ":1: not UTF-8 text: byte 0x8b at column 2 (invalid start byte)")):  # fmt: skip
        path = tmp_path / f"{name}.jsonl"
        tasks.register_pretraining_task(f"test_bad_{name}", sources.jsonl_files({"train": str(path)}), V)
        with pytest.raises(ValueError, match="^" + str(path) + expected.replace("(", r"\(").replace(")", r"\)")):
            pipeline.count(_rows(f"test_bad_{name}"))


def test_bad_jsonl_through_batch_streams(tmp_path):
    path = _write_bad(tmp_path, "not_object")
    source = sources.jsonl_files({"train": str(path)})
    tasks.register_pretraining_task("test_bad_stream", source, V, shuffle_buffer_size=8)
    with pytest.raises(ValueError, match=rf"^{path}:3: not a JSON object"):
        pipeline.fixed_batches("test_bad_stream", "train", SEQ_LEN, 4, seed=0)
    batches = pipeline.host_batches("test_bad_stream", "train", SEQ_LEN, 4, seed=0, shuffle=True, repeat=False,
                                    shard_info=None, host_split="shard", pack=False)  # fmt: skip
    stream = pipeline.BatchStream(batches)  # as TrainStream's (whose repeat only makes the error slower to come)
    with pytest.raises(ValueError, match=rf"^{path}:3: not a JSON object"):
        next(stream)


def test_good_jsonl_passes_unchanged(tmp_path):
    texts = ["plain", CHINESE, "emoji 🙂 and \u00e9", 'quotes " and \\ backslash', "line\nbreak inside"]
    path = tmp_path / "good.jsonl"
    # a byte-order mark, CRLF line ends, blank lines and a last line without its newline
    body = "\r\n\r\n".join(json.dumps({"text": t, "id": i}, ensure_ascii=i % 2 == 0) for i, t in enumerate(texts))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert _documents(sources.jsonl_files({"train": str(path)})) == texts
    typed = sources.jsonl_examples({"train": str(path)}, {"text": tf.string, "id": tf.int32}, {"text": "text"})
    assert [int(ex["id"]) for ex in typed.get_dataset("train", shuffle=False).as_numpy_iterator()] == [0, 1, 2, 3, 4]
    wrong = sources.jsonl_examples({"train": str(path)}, {"text": tf.float32})
    with pytest.raises(ValueError, match=rf"^{path}:1: key 'text' holds a string, not a number \(float32\)$"):
        pipeline.count(wrong.get_dataset("train", shuffle=False))


# ---------------------------------------------------------------------------------------------------
# The command-line readers: generate --prompts and evaluate --source.


def test_prompt_file_that_is_not_utf8_names_file_and_line(tmp_path):
    good = tmp_path / "prompts.txt"
    good.write_text(f"First [MASK] prompt.\n\n{CHINESE}\n", encoding="utf-8")
    assert generate.read_prompts("", str(good)) == ["First [MASK] prompt.", "", CHINESE]  # one per line
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("First prompt.\nUn café [MASK].\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^--prompts={latin}:2: not UTF-8 text: byte 0xe9 at offset 6"):
        generate.read_prompts("", str(latin))
    binary = tmp_path / "prompts.gz"
    binary.write_bytes(gzip.compress(b"a prompt\n"))
    with pytest.raises(ValueError, match=rf"^--prompts={binary}:1: not UTF-8 text"):
        generate.read_prompts("", str(binary))
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"ok\nnot\x00ok\n")
    with pytest.raises(ValueError, match=rf"^--prompts={nul}:2: not text: a NUL byte at offset 3"):
        generate.read_prompts("", str(nul))


def test_generate_command_prints_one_line_for_a_non_utf8_prompt_file(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"fine\n\xff\xfe not utf-8\n")
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "glm_jax.generate", f"--workdir={tmp_path}", f"--prompts={prompts}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"glm_jax.generate: error: --prompts={prompts}:2: not UTF-8 text: byte 0xff"), lines


def test_evaluate_with_a_bad_jsonl_line_fails_naming_it(tmp_path, monkeypatch):
    path = _write_bad(tmp_path, "missing_key")
    config = types.SimpleNamespace(model=types.SimpleNamespace(max_len=0), data=types.SimpleNamespace(seq_len=64))
    monkeypatch.setattr(workdir, "read_config", lambda _: config)
    monkeypatch.setattr(workdir, "load", lambda _: types.SimpleNamespace(vocabulary=V))  # the data fail first
    args = types.SimpleNamespace(
        setting="both", window=0, stride=0, max_documents=0, batch_size=0, lambada_min_words=10,
        source=f"jsonl:{tmp_path}/*.jsonl", split="test", text_key="text", workdir=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(ValueError, match=rf"^{path}:4: not a JSON object with keys \['text'\]: no key 'text'"):
        evaluate.run(args)


# ---------------------------------------------------------------------------------------------------
# Iterator checkpoints: draw k, save, draw m; restore into a fresh iterator of the same dataset: the same m.


def _assert_restores_exactly(make_dataset, tmp_path, k=5, m=12):
    iterator = iter(make_dataset())
    for _ in range(k):
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt" / "input"))
    after = [tf.nest.map_structure(lambda t: t.numpy(), next(iterator)) for _ in range(m)]
    fresh = iter(make_dataset())
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    again = [tf.nest.map_structure(lambda t: t.numpy(), next(fresh)) for _ in range(m)]
    for a, b in zip(after, again, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    start = next(iter(make_dataset()))  # and it did not start over
    assert any(not np.array_equal(after[0][key], start[key].numpy()) for key in start)


def test_jsonl_iterators_restore_exactly(tmp_path):
    for f in range(3):
        lines = [json.dumps({"text": f"file {f} line {i}", "id": 100 * f + i}) for i in range(7)]
        (tmp_path / f"part{f}.jsonl").write_text("\n".join(lines[:4]) + "\n\n" + "\n".join(lines[4:]) + "\n")
    source = sources.jsonl_examples({"train": str(tmp_path / "*.jsonl")}, {"text": tf.string, "id": tf.int64})
    _assert_restores_exactly(lambda: source.get_dataset("train", shuffle=True, seed=7).repeat(), tmp_path)
    # The whole pretraining pipeline over it (shuffled, repeated, rows of the contract), as training saves it.
    documents = sources.jsonl_files({"train": str(tmp_path / "*.jsonl")})
    tasks.register_pretraining_task("test_ckpt_jsonl", documents, V, shuffle_buffer_size=16)
    _assert_restores_exactly(
        lambda: pipeline.host_batches("test_ckpt_jsonl", "train", SEQ_LEN, 2, seed=3, shuffle=True, repeat=True,
                                      shard_info=None, host_split="shard", pack=False),
        tmp_path, k=3, m=8,
    )  # fmt: skip


def test_text_file_iterators_restore_exactly(tmp_path):
    for i in range(9):
        (tmp_path / f"doc{i}.txt").write_text(f"Document number {i}. " * (i + 1) + CHINESE[: i + 1])
    (tmp_path / "binary.txt").write_bytes(PNG)  # skipped: its Python warning op is in the saved pipeline
    source = sources.text_files({"train": str(tmp_path / "*.txt")})
    _assert_restores_exactly(lambda: source.get_dataset("train", shuffle=True, seed=11).repeat(), tmp_path)


def test_default_corpus_iterators_restore_exactly(tmp_path):
    source = sources.default_corpus_source()
    _assert_restores_exactly(lambda: source.get_dataset("train", shuffle=True, seed=5).repeat(), tmp_path)
