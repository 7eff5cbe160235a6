"""`convert --export --hub DIR`: a workdir in the layout of the released hub checkpoints, and back.

The tiny workdirs are made as in tests/test_convert.py: a random official state dict converted with
`configs/glm_tiny.py`'s training settings.
"""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
import safetensors.numpy
from conftest import ROOT
from test_convert import BLANK_MARKERS, official_batch_arrays, official_state_dict, tiny_vocab

from glm_jax import convert
from glm_jax import workdir as workdir_lib
from glm_jax.data import vocab
from glm_jax.model.glm import GLM
from glm_jax.official import batch as official_batch
from glm_jax.official import hub_tokenizer, mapping, torch_format

TINY_CONFIG = str(ROOT / "configs" / "glm_tiny.py")
SHARED_BERT = ROOT.parent / "shared" / "vocab" / "bert-base-uncased-vocab.txt"
HUB_FILES = {"pytorch_model.bin", "model.safetensors", "config.json", "tokenizer_config.json", "added_tokens.json"}


def make_workdir(folder: pathlib.Path, vocabulary: str, rows: int, layers=2, hidden=72, heads=18) -> pathlib.Path:
    """A converted workdir of random weights: `layers` layers, positions up to 32, `rows` embedding rows."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "random.bin"
    torch_format.save(official_state_dict(np.random.default_rng(rows), layers, hidden, 32, vocab=rows), checkpoint)
    workdir = folder / "workdir"
    convert.convert(str(checkpoint), str(workdir), heads=heads, vocabulary=vocabulary, base_config=TINY_CONFIG)
    return workdir


def export(workdir, directory, *flags) -> int:
    return convert.main(["--export", "--workdir", str(workdir), "--hub", str(directory), *flags])


def numpy_params(workdir) -> dict:
    return jax.tree.map(np.asarray, workdir_lib.load(str(workdir)).params)


def assert_bitwise_equal(got: np.ndarray, want: np.ndarray, name: str) -> None:
    assert (got.dtype, got.shape) == (want.dtype, want.shape), name
    assert got.tobytes() == want.tobytes(), name


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A tiny workdir of the 110-line BERT vocabulary, exported with --overwrite into a folder that
    already holds a file of the user's."""
    folder = tmp_path_factory.mktemp("wordpiece")
    vocabulary = tiny_vocab(folder)
    workdir = make_workdir(folder, vocabulary, rows=128)
    directory = folder / "hub"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    assert export(workdir, directory, "--overwrite") == 0
    expected = mapping.to_official(numpy_params(workdir), prefix="glm.")
    return workdir, directory, vocabulary, expected


def test_the_folder_holds_the_hub_files_and_the_users_file_stays(wordpiece):
    _, directory, _, _ = wordpiece
    assert {p.name for p in directory.iterdir()} == HUB_FILES | {"vocab.txt", "notes.txt"}
    assert (directory / "notes.txt").read_text() == "mine"
    assert len({p.stat().st_mode for p in directory.iterdir()}) == 1  # as readable as the user's own file


def test_safetensors_load_file_gives_the_parameters_under_the_hub_names(wordpiece):
    _, directory, _, expected = wordpiece
    loaded = safetensors.numpy.load_file(directory / "model.safetensors")
    assert sorted(loaded) == sorted(expected) and len(expected) == 3 + 2 * 12 + 2
    assert "glm.transformer.layers.1.attention.query_key_value.weight" in loaded
    for name, array in expected.items():
        assert_bitwise_equal(loaded[name], array, name)


def test_pytorch_model_bin_gives_the_same_arrays_in_the_official_order(wordpiece):
    _, directory, _, expected = wordpiece
    loaded = torch_format.load(directory / "pytorch_model.bin")
    assert list(loaded) == list(expected)
    for name, array in expected.items():
        assert_bitwise_equal(loaded[name].numpy(), array, name)


def test_convert_reads_the_hub_folder_back_to_the_same_model(wordpiece, tmp_path, capsys):
    workdir, directory, vocabulary, _ = wordpiece
    back = tmp_path / "back"
    # Heads and vocabulary come from the folder's config.json and tokenizer files.
    assert convert.main(["--checkpoint", str(directory), "--workdir", str(back), "--base_config", TINY_CONFIG]) == 0
    assert "2 layers, hidden 72, 18 heads, 128 embedding rows" in capsys.readouterr().out
    original, restored = workdir_lib.load(str(workdir)), workdir_lib.load(str(back))
    assert restored.config.data.vocabulary == f"wordpiece:{directory / 'vocab.txt'}"
    assert restored.glm_config == original.glm_config
    want, got = jax.tree.map(np.asarray, original.params), jax.tree.map(np.asarray, restored.params)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        assert_bitwise_equal(g, w, jax.tree_util.keystr(path))

    tokens, position_ids, sep = official_batch_arrays(np.random.default_rng(3))
    batch = official_batch.to_contract(tokens, position_ids, sep, BLANK_MARKERS)
    logits = [np.asarray(GLM(m.glm_config).apply({"params": m.params}, batch)) for m in (original, restored)]
    assert np.abs(logits[0]).max() > 1.0
    assert_bitwise_equal(logits[1], logits[0], "logits")


def test_config_json_holds_the_hubs_keys_for_the_tiny_model(wordpiece):
    _, directory, _, _ = wordpiece
    config = json.loads((directory / "config.json").read_text())
    assert config == {
        "architectures": ["GLMModel"],
        "attention_dropout_prob": 0.0,  # configs/glm_tiny.py trains without dropout
        "attention_scale": 1.0,
        "auto_map": {
            "AutoConfig": "configuration_glm.GLMConfig",
            "AutoModel": "modeling_glm.GLMModel",
            "AutoModelForSeq2SeqLM": "modeling_glm.GLMForConditionalGeneration",
            "AutoModelForMultipleChoice": "modeling_glm.GLMForMultipleChoice",
        },
        "block_position_encoding": True,
        "checkpoint_activations": False,
        "checkpoint_num_layers": 1,
        "embedding_dropout_prob": 0.0,
        "hidden_size": 72,
        "initializer_range": 0.02,
        "max_sequence_length": 32,
        "model_type": "glm",
        "num_attention_heads": 18,
        "num_layers": 2,
        "output_dropout_prob": 0.0,
        "output_predict": True,
        "parallel_output": True,
        "pool_token": "cls",
        "relative_encoding": False,
        "spell_func": "lstm",
        "spell_length": None,
        "torch_dtype": "float32",
        "vocab_size": 128,
    }


def assert_wordpiece_tokenizer(directory: pathlib.Path, vocab_txt: pathlib.Path, lines: int) -> None:
    """GLMBertTokenizer's files: vocab.txt as given, GLM's tokens appended after its `lines` lines."""
    assert (directory / "vocab.txt").read_bytes() == vocab_txt.read_bytes()
    appended = ["<|startofpiece|>", "<|endofpiece|>", "[gMASK]", "[sMASK]", "[dBLOCK]"]
    added = json.loads((directory / "added_tokens.json").read_text())
    assert added == {piece: lines + k for k, piece in enumerate(appended)}
    config = json.loads((directory / "tokenizer_config.json").read_text())
    assert config == {
        "eos_token": "[PAD]",  # as the official BERT tokenizer of GLM: eos is [PAD] (id 0)
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
        "additional_special_tokens": ["<|startofpiece|>", "<|endofpiece|>", "[gMASK]", "[sMASK]"],
        "do_lower_case": True,
        "add_prefix_space": False,
        "tokenizer_class": "GLMBertTokenizer",
        "use_fast": False,
        "auto_map": {"AutoTokenizer": ["tokenization_glm.GLMBertTokenizer", None]},
        "glm_jax_vocabulary": "wordpiece",
    }


def test_tokenizer_files_of_a_wordpiece_vocabulary(wordpiece):
    _, directory, vocabulary, _ = wordpiece
    assert_wordpiece_tokenizer(directory, pathlib.Path(vocabulary.partition(":")[2]), lines=110)


def test_tokenizer_files_of_the_real_bert_vocabulary(tmp_path):
    if not SHARED_BERT.exists():
        pytest.skip(f"{SHARED_BERT} is absent (the real tokenizer files live in ../shared/vocab, see its README)")
    # The tokenizer files alone: the export around them is the one of the tiny vocabulary above.
    written = hub_tokenizer.write(str(tmp_path), f"wordpiece:{SHARED_BERT}")
    assert written == ["vocab.txt", "added_tokens.json", "tokenizer_config.json"]
    assert_wordpiece_tokenizer(tmp_path, SHARED_BERT, lines=30522)


def test_tokenizer_files_of_the_default_vocabulary(tmp_path, capsys):
    # data.vocabulary unset: the task's vocabulary, the shipped SentencePiece model of 8,000 pieces.
    workdir = make_workdir(tmp_path, "", rows=8064, layers=1, hidden=16, heads=2)
    assert workdir_lib.read_config(str(workdir)).data.vocabulary == ""
    directory = tmp_path / "hub"
    assert export(workdir, directory, "--dtype", "bfloat16") == 0
    assert f"Wrote step 0 of {workdir} (bfloat16) to {directory}: pytorch_model.bin, " in capsys.readouterr().out
    assert {p.name for p in directory.iterdir()} == HUB_FILES | {"cog-pretrain.model"}
    assert (directory / "cog-pretrain.model").read_bytes() == pathlib.Path(vocab.DEFAULT_SPM_PATH).read_bytes()
    assert json.loads((directory / "added_tokens.json").read_text()) == {}  # every command token is a piece
    config = json.loads((directory / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "GLMChineseTokenizer" and config["glm_jax_vocabulary"] == "default"
    roles = ("eos_token", "pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
    assert [config[role] for role in roles] == ["</s>", "<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert json.loads((directory / "config.json").read_text())["torch_dtype"] == "bfloat16"
    # Read back: the same model, as an spm vocabulary of the copied file.
    spec = hub_tokenizer.spec_from_directory(str(directory))
    assert spec == f"spm:{directory / 'cog-pretrain.model'}"
    assert vocab.GLMSentencePieceVocabulary(spec[4:]).command_tokens == vocab.default_vocabulary().command_tokens
    state_dict = convert.read_state_dict(str(directory))
    assert state_dict["word_embeddings.weight"].dtype.name == "bfloat16"  # safetensors' own loader, BF16
    np.testing.assert_array_equal(
        convert.read_state_dict(str(directory / "pytorch_model.bin"))["word_embeddings.weight"].numpy(),
        state_dict["word_embeddings.weight"].astype(np.float32),
    )


def test_bad_inputs_are_one_line_and_lose_nothing(wordpiece, tmp_path, capsys):
    workdir, _, _, _ = wordpiece
    used = tmp_path / "used"
    used.mkdir()
    (used / "pytorch_model.bin").write_text("an earlier export")
    (tmp_path / "file").write_text("notes")
    bare = tmp_path / "bare"  # a config.json but no checkpoint
    bare.mkdir()
    (bare / "config.json").write_text((workdir / "config.json").read_text())
    narrow = tmp_path / "narrow"  # a model the hub's GLM cannot hold
    shutil.copytree(workdir, narrow)
    config = json.loads((narrow / "config.json").read_text())
    config["model"]["mlp_ratio"] = 2
    (narrow / "config.json").write_text(json.dumps(config))
    cases = [
        ([str(workdir), used], f"--hub {used} already exists and is not empty; choose a new directory, or add "),
        ([str(workdir), tmp_path / "no" / "such"], f"the directory {tmp_path / 'no'} does not exist; create it first"),
        ([str(workdir), tmp_path / "file"], f"--hub {tmp_path / 'file'} is a file; name a directory."),
        ([str(bare), tmp_path / "new"], f"{bare}/checkpoints holds no checkpoint; train first"),
        ([str(tmp_path / "nothing"), tmp_path / "new"], "has no config.json: it is not a glm_jax workdir"),
        ([str(workdir), tmp_path / "new", "--prefix", "x."], "--hub writes the hub's own names"),
        ([str(narrow), tmp_path / "new"], "fixes the MLP at 4 x hidden_size; this model's is 2 x (model.mlp_ratio)"),
    ]
    for args, message in cases:
        assert export(*args) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("glm_jax.convert: error: ") and message in err and err.count("\n") == 1, err
    both = ["--export", "--workdir", str(workdir), "--hub", str(tmp_path / "new"), "--output", str(tmp_path / "x")]
    assert convert.main(both) == 2
    assert "--export needs one of --output FILE or --hub DIR." in capsys.readouterr().err
    assert (used / "pytorch_model.bin").read_text() == "an earlier export" and len(list(used.iterdir())) == 1
    assert (tmp_path / "file").read_text() == "notes"
    assert not (tmp_path / "no").exists() and not (tmp_path / "new").exists()


def test_reading_back_names_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds neither model.safetensors nor pytorch_model.bin"):
        convert.read_state_dict(str(tmp_path / "empty"))
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        convert.read_state_dict(str(tmp_path / "empty"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GLMChineseTokenizer"}))
    with pytest.raises(ValueError, match="give --vocabulary SPEC: glm-chinese:.* or glm-chinese-10b:"):
        hub_tokenizer.spec_from_directory(str(tmp_path))
