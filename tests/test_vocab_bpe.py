"""GPT2Vocabulary against HuggingFace's ByteLevelBPETokenizer on byte-level BPE files written here."""

import json
import pickle
import random

import pytest
import tensorflow as tf
from tokenizers import ByteLevelBPETokenizer

from glm_jax.contract import CommandTokens
from glm_jax.data import bpe

WORDS = (
    "the a of and to in is was for on with as by at from that this it he she they we you "
    "model language general blank infilling span mask token text sentence document pretraining "
    "Hello World GLM GPT Paris München café naïve résumé déjà über it's don't we'll they've I'm "
    "2022 3.14 12,345 100% $5 #1 e-mail user@example.com 中文 模型 🙂 🚀 ... -- (x) [y] {z}"
).split()

PARAGRAPH = (
    "Hello, World!  GLM's blank-infilling (short spans) was PRETRAINED in 2022; accuracy: 91.5%.\n"
    "Café au lait à München costs $3.14 — naïve résumé… 🙂 ☃ 中文模型   ends here.\n\n"
)
TEXTS = [
    PARAGRAPH,
    "",
    "   ",
    "  leading and trailing  ",
    "x  \n  y\t\tz \r\n",
    "don't WE'LL I'm they've 's  's\n's",
    "odd\x0bspaces\x0c here\x1c and\x85 there\xa0 now\u2028 and\u3000 then\u200b end",
    "<|endoftext|> [MASK] <|startofpiece|>",
    "aaaaaaaaaaaaaaaaaaaa ==================== 1234567890123",
]


def _corpus() -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) for _ in range(400)]


def _write(directory, vocab: dict[str, int], merges: list[str]) -> tuple[str, str]:
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return str(vocab_path), str(merges_path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """GPT-2's layout: the byte symbols and learned pieces, then <|endoftext|> as the last id N - 1."""
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(_corpus(), vocab_size=600, min_frequency=2, show_progress=False)
    directory = tmp_path_factory.mktemp("gpt2")
    trainer.save_model(str(directory))
    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    vocab["<|endoftext|>"] = len(vocab)
    merges = (directory / "merges.txt").read_text(encoding="utf-8").split("\n")[1:-1]
    return (*_write(directory, vocab, merges), vocab)


@pytest.fixture(scope="module")
def vocab(files):
    return bpe.GPT2Vocabulary(files[0], files[1])


@pytest.fixture(scope="module")
def reference(files):
    return ByteLevelBPETokenizer(files[0], files[1])


def test_byte_symbols():
    symbols = bpe.byte_symbols()
    assert len(set(symbols)) == 256
    assert (symbols[ord("A")], symbols[ord(" ")], symbols[ord("\n")], symbols[0], symbols[0xFF]) == (
        "A",
        "Ġ",
        "Ċ",
        "Ā",
        "ÿ",
    )


def test_pretokenize_worked_example(reference):
    text = "a  b\n\nc "
    pieces = [p.decode() for p in bpe._pretokenize_tf(tf.constant([text])).numpy()]
    assert pieces == ["a", " ", " b", "\n", "\n", "c", " "]
    symbols = bpe.byte_symbols()
    assert ["".join(symbols[b] for b in p.encode()) for p in pieces] == [
        p for p, _ in reference.pre_tokenizer.pre_tokenize_str(text)
    ]


def test_encode_matches_reference(vocab, reference):
    for text in TEXTS:
        assert vocab.encode(text) == reference.encode(text).ids, repr(text)
    assert len(vocab.encode(PARAGRAPH)) < 0.6 * len(PARAGRAPH.encode())  # merges do apply


def test_encode_tf_in_dataset_map_matches_reference(files, reference):
    fresh = bpe.GPT2Vocabulary(files[0], files[1])  # first use inside the traced map function
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).map(fresh.encode_tf)
    assert [ids.numpy().tolist() for ids in dataset] == [reference.encode(text).ids for text in TEXTS]
    assert all(ids.dtype == tf.int32 for ids in dataset)


def test_merge_order(tmp_path):
    """Lowest rank first; among equal pairs the leftmost; merges only inside a piece."""
    symbols = bpe.byte_symbols()
    merges = ["b c", "a b", "a a", "Ġ a"]
    vocab = {s: i for i, s in enumerate(symbols + ["bc", "ab", "aa", "Ġa", "<|endoftext|>"])}
    paths = _write(tmp_path, vocab, merges)
    ours, reference = bpe.GPT2Vocabulary(*paths), ByteLevelBPETokenizer(*paths)
    for text, pieces in [
        ("abc", ["a", "bc"]),
        ("aaa", ["aa", "a"]),
        ("aaaaa", ["aa", "aa", "a"]),
        ("ab abc", ["ab", "Ġa", "bc"]),
    ]:
        assert ours.encode(text) == reference.encode(text).ids == [vocab[p] for p in pieces]


def test_decode_round_trips(vocab):
    for text in TEXTS:
        assert vocab.decode(vocab.encode(text)) == text
    dataset = tf.data.Dataset.from_tensors(tf.constant(vocab.encode(PARAGRAPH))).map(vocab.decode_tf)
    assert next(iter(dataset)).numpy().decode() == PARAGRAPH


def test_command_token_ids(vocab, files):
    n = len(files[2])
    assert files[2]["<|endoftext|>"] == n - 1
    assert vocab.command_tokens == CommandTokens(
        pad=n - 1, eos=n - 1, sop=n, eop=n + 1, cls=n + 2, mask=n + 3, sep=n + 4, unk=n + 5, gmask=n + 6,
        smask=n + 7, dblock=n + 8,
    )  # fmt: skip
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id, vocab.vocab_size) == (n - 1, n - 1, n + 5, n + 9)
    hello = vocab.encode("Hello")
    ids = [n + 2, *hello, n + 3, n + 4, n + 6, n + 7, n + 8, n, *hello, n + 1, n + 5, n - 1, *hello]
    expected = "[CLS]Hello[MASK][SEP][gMASK][sMASK][dBLOCK]<|startofpiece|>Hello<|endofpiece|>[UNK]"
    assert vocab.decode(ids) == expected  # stops at eos, which it drops
    assert vocab.decode_tf(tf.constant(ids)).numpy().decode() == expected
    assert max(vocab.encode(TEXTS[7])) < n - 1


def test_piece_texts(vocab, files):
    symbol_ids, n = files[2], len(files[2])
    texts = vocab.piece_texts()
    assert len(texts) == vocab.vocab_size == n + 9
    assert texts[n - 1] == "" and texts[n] == "<|startofpiece|>" and texts[n + 5] == "[UNK]"
    assert texts[symbol_ids["Ġ"]] == " " and texts[symbol_ids["Ċ"]] == "\n" and texts[symbol_ids["Ã"]] == "\ufffd"
    assert texts[symbol_ids["Ġthe"]] == " the" and texts[symbol_ids["Ã©"]] == "é"


def test_equality_copy_and_bad_files(vocab, files, tmp_path):
    assert bpe.GPT2Vocabulary(files[0], files[1]) == bpe.GPT2Vocabulary(files[0], files[1])
    vocab.encode("built")
    copied = pickle.loads(pickle.dumps(vocab))
    assert copied == vocab and copied.encode("Hello, world") == vocab.encode("Hello, world")
    vocab = {s: i for i, s in enumerate(bpe.byte_symbols())}
    other = _write(tmp_path, {**vocab, "<|endoftext|>": 256}, [])
    assert bpe.GPT2Vocabulary(*other) != bpe.GPT2Vocabulary(files[0], files[1])
    with pytest.raises(ValueError, match="endoftext"):
        bpe.GPT2Vocabulary(*_write(tmp_path, vocab, []))
