"""BertVocabulary against HuggingFace's BertWordPieceTokenizer on a WordPiece vocabulary trained here."""

import pickle
import random

import pytest
import tensorflow as tf
from tokenizers import BertWordPieceTokenizer

from glm_jax import config as config_lib
from glm_jax import pretraining
from glm_jax.contract import CommandTokens
from glm_jax.data import vocab_spec
from glm_jax.data.vocab import default_vocabulary
from glm_jax.data.wordpiece import BertVocabulary

WORDS = (
    "the a of and to in is was for on with as by at from that this it he she they we you "
    "model language general blank infilling span mask masks masked masking token tokens text "
    "sentence document pretraining training trained pretrained autoregressive bidirectional "
    "Hello World GLM BERT Paris München café naïve résumé Ünïcödé façade über déjà vu "
    "2021 2022 3.14 12,345 1987 6 [note] 100% $5 #1 e-mail user@example.com 中文 模型 🙂 🚀"
).split()
PUNCT = [",", ".", "!", "?", ";", ":", "(", ")", "'", '"', "-", "...", "…", "—"]

PARAGRAPH = (
    "Hello, World!  GLM's blank-infilling (short spans) was PRETRAINED in 2022; accuracy: 91.5%.\n"
    "Café au lait à München costs $3.14 — naïve résumé… 🙂 ☃ 中文模型   ends here."
)
TEXTS = [
    PARAGRAPH,
    "",
    "   ",
    "Tabs\tand\r\nnewlines\u00a0and\u3000wide\u2028spaces",
    "zero\u200bwidth\x00null\x07bell\ufffdreplacement",
    "x" * 101 + " " + "y" * 100,  # more than 100 characters: [UNK]
    "İstanbul ΣΟΦΊΑ ǅemal ﬁne ①",
]


def _corpus() -> list[str]:
    rng = random.Random(0)
    return [
        " ".join(
            rng.choice(WORDS) + (rng.choice(PUNCT) if rng.random() < 0.2 else "") for _ in range(rng.randint(4, 16))
        )
        for _ in range(400)
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A vocab.txt in BERT's layout: [PAD] 0, filler, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, learned pieces."""
    trainer = BertWordPieceTokenizer()
    trainer.train_from_iterator(_corpus(), vocab_size=700, min_frequency=1, show_progress=False)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    learned = [t for t, _ in sorted(trainer.get_vocab().items(), key=lambda kv: kv[1]) if t not in specials]
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + specials[1:] + learned
    path = tmp_path_factory.mktemp("bert") / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path), tokens


@pytest.fixture(scope="module")
def vocab(files):
    return BertVocabulary(files[0])


@pytest.fixture(scope="module")
def reference(files):
    return BertWordPieceTokenizer(files[0], lowercase=True)


def _reference_ids(reference, text):
    return reference.encode(text, add_special_tokens=False).ids


def test_encode_matches_reference(vocab, reference, files):
    tokens = files[1]
    for text in TEXTS:
        assert vocab.encode(text) == _reference_ids(reference, text), text
    cased, cased_reference = (
        BertVocabulary(files[0], lower_case=False),
        BertWordPieceTokenizer(files[0], lowercase=False),
    )
    for text in TEXTS:
        assert cased.encode(text) == _reference_ids(cased_reference, text), text
    ids = vocab.encode(PARAGRAPH)
    # The paragraph exercises unknown words and continuation pieces.
    assert vocab.unk_id in ids and any(tokens[i].startswith("##") for i in ids)


def test_encode_tf_in_dataset_map_matches_reference(files, reference):
    fresh = BertVocabulary(files[0])  # first use inside the traced map function
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).map(fresh.encode_tf)
    got = [ids.numpy().tolist() for ids in dataset]
    assert got == [_reference_ids(reference, text) for text in TEXTS]
    assert all(ids.dtype == tf.int32 for ids in dataset)


def test_decode_round_trips_normalized_words(vocab, reference):
    assert vocab.decode(vocab.encode("Hello,  WORLD!\nNaïve café")) == "hello , world ! naive cafe"
    for text in [PARAGRAPH.replace("☃", ""), "Masked language models: BERT, GLM (2022)."]:
        ids = vocab.encode(text)
        assert vocab.unk_id not in ids
        normalized = reference.normalizer.normalize_str(text)
        words = [word for word, _ in reference.pre_tokenizer.pre_tokenize_str(normalized)]
        assert vocab.decode(ids) == " ".join(words)
        dataset = tf.data.Dataset.from_tensors(tf.constant(ids)).map(vocab.decode_tf)
        assert next(iter(dataset)).numpy().decode() == " ".join(words)


def test_command_token_ids(vocab, files):
    n = len(files[1])
    assert vocab.command_tokens == CommandTokens(
        pad=0, eos=0, unk=100, cls=101, sep=102, mask=103, sop=n, eop=n + 1, gmask=n + 2, smask=n + 3, dblock=n + 4
    )
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id, vocab.vocab_size) == (0, 0, 100, n + 5)
    ct = vocab.command_tokens
    ids = [ct.cls, ct.mask, ct.sop, ct.eop, ct.gmask, ct.smask, ct.dblock, ct.sep, ct.pad, ct.mask]
    assert vocab.decode(ids) == "[CLS] [MASK] <|startofpiece|> <|endofpiece|> [gMASK] [sMASK] [dBLOCK] [SEP]"
    assert vocab.decode_tf(tf.constant(ids)).numpy().decode() == vocab.decode(ids)


def test_literal_command_tokens_in_text_stay_text(vocab, files):
    ids = vocab.encode("[MASK] [CLS] [SEP] [PAD] [gMASK]")
    assert ids[:3] == [files[1].index(t) for t in ["[", "mask", "]"]]
    assert not {0, 101, 102, 103} & set(ids) and max(ids) < len(files[1])


def test_piece_texts(vocab, files):
    tokens = files[1]
    texts = vocab.piece_texts()
    n = len(tokens)
    assert len(texts) == vocab.vocab_size == n + 5
    assert texts[0] == "" and texts[100] == "[UNK]" and texts[103] == "[MASK]"
    assert texts[n : n + 5] == ["<|startofpiece|>", "<|endofpiece|>", "[gMASK]", "[sMASK]", "[dBLOCK]"]
    assert texts[tokens.index("##s")] == "s" and texts[tokens.index(".")] == "."


def test_equality_copy_and_missing_command_token(vocab, files, tmp_path):
    assert BertVocabulary(files[0]) == BertVocabulary(files[0])
    vocab.encode("built")
    copied = pickle.loads(pickle.dumps(vocab))
    assert copied == vocab and copied.encode("Hello, world") == vocab.encode("Hello, world")
    assert BertVocabulary(files[0]) != BertVocabulary(files[0], lower_case=False)
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(t for t in files[1] if t != "[MASK]") + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        BertVocabulary(str(path))


def test_vocabulary_spec(files, tmp_path):
    assert vocab_spec.from_spec(f"wordpiece:{files[0]}") == BertVocabulary(files[0])
    assert vocab_spec.from_spec("default") is default_vocabulary()
    with pytest.raises(ValueError, match="not found"):
        vocab_spec.from_spec(f"wordpiece:{tmp_path}/nothing.txt")
    with pytest.raises(ValueError, match="bpe:VOCAB_JSON,MERGES_TXT"):
        vocab_spec.from_spec(f"bpe:{files[0]}")


def test_training_refuses_a_task_of_another_vocabulary(files, tmp_path):
    config = config_lib.load_config_file("configs/glm_tiny.py")
    config.data.vocabulary = f"wordpiece:{files[0]}"
    with pytest.raises(ValueError, match="register a task with that vocabulary"):
        pretraining.run(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()  # refused before anything was written
