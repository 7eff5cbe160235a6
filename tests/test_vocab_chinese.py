"""ChineseSPVocabulary on the real `cog-pretrain.model` of GLM-Large/10B-Chinese (read from ../shared/vocab):
the official command-token layout, SentencePiece's own ids in Python and TF, decoding, and a tiny model
over it trained, exported, converted back and asked to fill a blank."""

import math
import pickle

import flax.linen as nn
import jax
import numpy as np
import pytest
import sentencepiece
import seqio
import tensorflow as tf
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import convert, generate, pretraining
from glm_jax import workdir as workdir_lib
from glm_jax.contract import CommandTokens
from glm_jax.data import chinese_sp, pipeline, tasks, vocab, vocab_spec
from glm_jax.data.objectives import DocumentLevel
from glm_jax.downstream.decoding import DecodeOptions, Decoder

SHARED_VOCAB = ROOT.parent / "shared" / "vocab"
MODEL = SHARED_VOCAB / "cog-pretrain.model"

TEXTS = [
    "今天吃饭吃了肯德基",
    "GLM 是一个 General Language Model，2022年发布。",
    "北京故宫是中国第一批全国重点文物保护单位。Hello, World! 3.14 元",
    "  多个   空格  和\n换行\t制表符\r\n",
    "全角：ＡＢＣ１２３，半角カタカナ：ｶﾀｶﾅ，表情 🙂",
    "蟥椪柑 岿然不动",  # characters outside the model: SentencePiece's <unk>
    "[MASK] [sMASK] [gMASK] [CLS] [SEP] [UNK] <|endoftext|> <|startofpiece|> <|endofpiece|> [dBLOCK]",
    "",
    "   ",
]
# Ordinary text (every character in the model), and what it decodes back to: NFKC, whitespace runs as one space.
ROUND_TRIPS = {
    "今天吃饭吃了肯德基": "今天吃饭吃了肯德基",
    "人工智能是一个以计算机科学为基础的交叉学科。": "人工智能是一个以计算机科学为基础的交叉学科。",
    "GLM 是一个 General Language Model，2022年发布。": "GLM 是一个 General Language Model,2022年发布。",
    "  问题：啤酒伤胃吗？\n回答：  不一定 ": "问题:啤酒伤胃吗? 回答: 不一定",
}


@pytest.fixture(scope="module")
def model_path() -> str:
    if not MODEL.exists():
        pytest.skip(f"the Chinese SentencePiece model is absent: ../shared/vocab absent ({MODEL} not found)")
    return str(MODEL)


@pytest.fixture(scope="module")
def vocab_large(model_path):
    return chinese_sp.ChineseSPVocabulary(model_path)


@pytest.fixture(scope="module")
def reference(model_path):
    """The official text tokenizer: the `sentencepiece` library on the same model."""
    return sentencepiece.SentencePieceProcessor(model_file=model_path)


def test_official_ids_match_the_official_glm_10b_chinese_log():
    # The ids the official pretraining script printed for glm-10b-chinese (THUDM/GLM issue #55).
    printed = {"pad": 50000, "eos": 50000, "sep": 50001, "ENC": 50002, "MASK": 50003, "unk": 50004, "sop": 50006,
               "eop": 50007, "gMASK": 50007, "sMASK": 50008, "dBLOCK": 50009}  # fmt: skip
    ours = {"ENC": "cls", "MASK": "mask", "gMASK": "gmask", "sMASK": "smask", "dBLOCK": "dblock"}
    ids = chinese_sp.official_ids(50000, fix_command_token=False)
    assert {name: ids[ours.get(name, name)] for name in printed} == printed
    assert list(ids) == ["pad", "eos", "sep", "cls", "mask", "unk", "sop", "eop", "gmask", "smask", "dblock"]


def test_command_token_ids_follow_the_official_layout(model_path, vocab_large, reference):
    n = reference.get_piece_size()  # 50,000 pieces; the official code appends its command tokens after them
    assert n == 50000 and (reference.unk_id(), reference.id_to_piece(3)) == (0, "<n>")
    # ChineseSPTokenizer: <|endoftext|> (pad = eos) n, [SEP] n+1, [CLS] n+2, [MASK] n+3, [UNK] n+4 ("+5 ids");
    # sop and eop at (n+5)+1 and (n+5)+2 (n+5 stays unused); then the task masks from n+5+3 with
    # fix_command_token (glm-large-chinese: sMASK first), from n+5+2 without (glm-10b-chinese: gMASK first,
    # on eop's id); [dBLOCK] after them.
    head = dict(pad=n, eos=n, sep=n + 1, cls=n + 2, mask=n + 3, unk=n + 4, sop=n + 6, eop=n + 7)
    large = CommandTokens(**head, smask=n + 8, gmask=n + 9, dblock=n + 10)
    ten_b = CommandTokens(**head, gmask=n + 7, smask=n + 8, dblock=n + 9)
    assert vocab_large.command_tokens == vocab.command_tokens(vocab_large) == large
    assert (vocab_large.pad_id, vocab_large.eos_id, vocab_large.unk_id, vocab_large.vocab_size) == (n, n, n + 4, n + 11)
    vocab_10b = vocab_spec.from_spec(f"glm-chinese-10b:{model_path}")
    assert vocab_10b.command_tokens == ten_b and vocab_10b.vocab_size == n + 10
    # Both fit the 50,048 embedding rows of the released checkpoints (rows padded to a multiple of 128).
    assert math.ceil(vocab_large.vocab_size / 128) * 128 == math.ceil(vocab_10b.vocab_size / 128) * 128 == 50048


def test_encode_matches_sentencepiece_in_python_and_tf(vocab_large, reference):
    for text in TEXTS:
        expected = reference.encode(text)
        assert vocab_large.encode(text) == expected, text
        assert vocab_large.encode_tf(tf.constant(text)).numpy().tolist() == expected, text
    assert reference.unk_id() in vocab_large.encode(TEXTS[5])  # unknown characters: <unk> 0, never [UNK]


def test_encode_tf_inside_a_dataset_map(model_path, reference):
    fresh = chinese_sp.ChineseSPVocabulary(model_path)  # first use inside the traced map function
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).map(fresh.encode_tf)
    got = [ids.numpy().tolist() for ids in dataset]
    assert got == [reference.encode(text) for text in TEXTS]
    assert all(ids.dtype == tf.int32 for ids in dataset)


def test_ordinary_text_never_yields_command_tokens(vocab_large, reference):
    n = reference.get_piece_size()
    for text in TEXTS + list(ROUND_TRIPS):
        ids = vocab_large.encode(text)
        assert all(0 <= i < n for i in ids), text  # only SentencePiece's pieces, never an appended id
    literal = vocab_large.encode(TEXTS[6])
    assert len(literal) > 10 and not set(literal) & {1, 2}  # nor <s>, </s>


def test_round_trips_in_python_and_tf(vocab_large, reference):
    for text, normalized in ROUND_TRIPS.items():
        ids = vocab_large.encode(text)
        assert reference.unk_id() not in ids
        assert vocab_large.decode(ids) == reference.decode(ids) == normalized, text
        assert vocab_large.decode_tf(tf.constant(ids)).numpy().decode() == normalized
    # In a tf.data map, a batch of rows padded with eos (= pad): decoding stops at eos.
    rows = [vocab_large.encode(text) for text in ROUND_TRIPS]
    width = max(map(len, rows)) + 2
    padded = [row + [vocab_large.eos_id] * (width - len(row)) for row in rows]
    decoded = tf.data.Dataset.from_tensors(tf.constant(padded)).map(vocab_large.decode_tf)
    assert [t.decode() for t in next(iter(decoded)).numpy()] == list(ROUND_TRIPS.values())
    for text in TEXTS[:6]:  # also with unknown characters and mixed scripts: SentencePiece's decoding
        ids = vocab_large.encode(text)
        assert vocab_large.decode(ids) == reference.decode(ids), text


def test_decode_equals_sentencepiece_on_random_ids(vocab_large, reference):
    """Any ids of pieces, <unk>, <s>, </s>, <n> and the bare '▁' included, decode as SentencePiece does."""
    rng = np.random.default_rng(0)
    n, width = reference.get_piece_size(), 12
    special = [0, 1, 2, 3, reference.piece_to_id("\u2581")]
    rows = []
    for _ in range(500):
        row = [int(rng.choice(special)) if rng.random() < 0.3 else int(rng.integers(n)) for _ in range(width)]
        rows.append(row[: rng.integers(width + 1)])
    expected = [reference.decode(row) for row in rows]
    assert [vocab_large.decode(row) for row in rows] == expected
    padded = tf.constant([row + [vocab_large.pad_id] * (width - len(row)) for row in rows])
    assert [text.decode() for text in vocab_large.decode_tf(padded).numpy()] == expected


def test_decoding_command_tokens(vocab_large, model_path):
    t = vocab_large.command_tokens
    text = vocab_large.encode("今天吃饭")
    ids = [t.cls, *text, t.mask, t.smask, t.gmask, t.sep, t.sop, t.eop, t.dblock, t.unk, t.eos, *text]
    expected = "[CLS]今天吃饭[MASK][sMASK][gMASK][SEP]<|startofpiece|><|endofpiece|>[dBLOCK][UNK]"
    assert vocab_large.decode(ids) == expected  # eos (= pad) ends the text
    assert vocab_large.decode_tf(tf.constant(ids)).numpy().decode() == expected
    assert vocab_large.decode([t.unk + 1, vocab_large.vocab_size + 5]) == "[UNK]"  # unused id; ids past the end
    vocab_10b = chinese_sp.ChineseSPVocabulary(model_path, fix_command_token=False)
    assert vocab_10b.decode([vocab_10b.command_tokens.eop]) == "[gMASK]"  # the shared id, named as officially


def test_piece_texts_and_sentence_ends(vocab_large, reference):
    texts = vocab_large.piece_texts()
    n = reference.get_piece_size()
    assert len(texts) == vocab_large.vocab_size
    assert texts[:4] == [" \u2047 ", "", "", "<n>"] and texts[reference.piece_to_id("\u2581你好")] == " 你好"
    assert texts[n:] == ["", "[SEP]", "[CLS]", "[MASK]", "[UNK]", "", "<|startofpiece|>", "<|endofpiece|>",
                         "[sMASK]", "[gMASK]", "[dBLOCK]"]  # fmt: skip
    ends = vocab.vocab_info(vocab_large).sentence_ends
    assert ends.shape == (vocab_large.vocab_size,)
    assert ends[reference.piece_to_id("。")] and ends[reference.piece_to_id("?")] and not ends[n:].any()


def test_equality_copy_and_bad_model(vocab_large, model_path, tmp_path):
    assert chinese_sp.ChineseSPVocabulary(model_path) == vocab_large
    assert hash(chinese_sp.ChineseSPVocabulary(model_path)) == hash(vocab_large)
    assert chinese_sp.ChineseSPVocabulary(model_path, fix_command_token=False) != vocab_large
    vocab_large.encode("先建好")
    copied = pickle.loads(pickle.dumps(vocab_large))
    assert copied == vocab_large and copied.encode(TEXTS[1]) == vocab_large.encode(TEXTS[1])
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        chinese_sp.ChineseSPVocabulary(str(bad))


def test_vocabulary_spec(vocab_large, model_path, tmp_path):
    assert vocab_spec.from_spec(f"glm-chinese:{model_path}") == vocab_large
    assert {"glm-chinese", "glm-chinese-10b"} <= set(vocab_spec.KINDS)
    with pytest.raises(ValueError, match="not found"):
        vocab_spec.from_spec(f"glm-chinese:{tmp_path}/cog-pretrain.model")
    with pytest.raises(ValueError, match="glm-chinese:SPM_MODEL"):
        vocab_spec.from_spec(f"glm-chinese:{model_path},{model_path}")


CORPUS = [
    "北京故宫是中国明清两代的皇家宫殿，旧称紫禁城，位于北京中轴线的中心。它是世界上现存规模最大的宫殿建筑群之一。",
    "人工智能是一个以计算机科学为基础，由计算机、数学、哲学等多学科交叉融合的交叉学科。它具有非常巨大的前景。",
    "GLM is a General Language Model pretrained with an autoregressive blank-filling objective. 它可以完成多种任务。",
    "啤酒的主要成分是水、麦芽和酒花。适量饮用对身体无害，过量饮用则会伤胃。喝酒之后不要开车。",
] * 4


def test_train_export_convert_and_generate(model_path, tmp_path):
    """A task over this vocabulary trains; the workdir exports to an official state dict, which converts
    back (as an official glm-large-chinese checkpoint would) and fills a blank in a Chinese prompt."""
    spec = f"glm-chinese:{model_path}"
    vocabulary = vocab_spec.from_spec(spec)
    source = seqio.FunctionDataSource(
        lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices({"text": CORPUS}),
        splits=("train", "validation"),
    )
    name = "glm_chinese_sp_test"
    tasks.register_pretraining_task(name, source, vocabulary, DocumentLevel(), task_mask=True)
    lengths = {"inputs": 64, "targets": 64, "loss_weights": 64, "span_ids": 64}
    example = next(iter(pipeline.task_examples(name, "train", lengths)))
    t = vocabulary.command_tokens
    assert example["inputs"][0] == t.cls and t.gmask in example["inputs"] and t.sop in example["inputs"]
    assert t.eop in example["targets"] and example["inputs"].numpy().max() < vocabulary.vocab_size

    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads, c.data.seq_len, c.data.batch_size = 2, 32, 2, 64, 8
    c.data.task, c.data.vocabulary, c.data.eval_batches, c.data.unigram_batches = name, spec, 1, 1
    c.train.steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 2, 1, 2, 2
    trained = tmp_path / "trained"
    metrics = pretraining.run(c, str(trained))
    assert np.isfinite(metrics["eval_loss"])

    state_dict = tmp_path / "pytorch_model.bin"
    assert convert.export(str(trained), str(state_dict)) > 0
    converted = tmp_path / "converted"
    shape = convert.convert(str(state_dict), str(converted), heads=2, vocabulary=spec)
    assert shape.vocab_size == 50048  # the released glm-large-chinese's embedding rows
    model = workdir_lib.load(str(converted))
    assert model.vocabulary == vocabulary and model.config.data.vocabulary == spec
    assert model.glm_config.vocab_size == 50048 and model.glm_config.blank_markers == (t.mask, t.smask, t.gmask)

    decoder = Decoder(model.glm_config, vocab.command_tokens(model.vocabulary), DecodeOptions(max_new_tokens=3))
    params = jax.tree.map(np.asarray, nn.unbox(model.params))
    [filled] = generate.filled_texts(decoder, params, model.vocabulary, ["北京故宫是中国[MASK]的宫殿。"])
    assert filled.startswith("北京故宫是中国") and filled.endswith("的宫殿。") and "[MASK]" not in filled
