"""Official GLM checkpoints: PyTorch files without torch, conversion both ways, identical outputs.

The forward pass is checked against tests/numpy_glm.py, a NumPy model written from the official
description that reads the official state dict and batch format directly.
"""

import collections

import flax.linen as nn
import jax
import numpy as np
import numpy_glm
import pytest
from conftest import ROOT

from glm_jax import convert
from glm_jax import workdir as workdir_lib
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.official import batch as official_batch
from glm_jax.official import mapping, torch_format

DATA = ROOT / "tests" / "data"
# Ids as in the BERT vocabulary (see tiny_vocab): [PAD] 0, [CLS] 101, [MASK] 103, then appended after
# the 110 lines: sop 110, eop 111, [gMASK] 112, [sMASK] 113.
PAD, CLS, MASK, SOP, GMASK, SMASK = 0, 101, 103, 110, 112, 113
BLANK_MARKERS = (MASK, SMASK, GMASK)
VOCAB_ROWS = 128


def official_state_dict(rng, layers, hidden, positions, vocab=VOCAB_ROWS, mlp=4):
    """A random state dict with the official names and shapes (written out from the issue's list)."""
    h, m = hidden, mlp * hidden
    shapes = {
        "word_embeddings.weight": (vocab, h),
        "transformer.position_embeddings.weight": (positions + 1, h),
        "transformer.block_position_embeddings.weight": (positions + 1, h),
    }
    for i in range(layers):
        p = f"transformer.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "input_layernorm.bias": (h,),
            p + "attention.query_key_value.weight": (3 * h, h),
            p + "attention.query_key_value.bias": (3 * h,),
            p + "attention.dense.weight": (h, h),
            p + "attention.dense.bias": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "post_attention_layernorm.bias": (h,),
            p + "mlp.dense_h_to_4h.weight": (m, h),
            p + "mlp.dense_h_to_4h.bias": (m,),
            p + "mlp.dense_4h_to_h.weight": (h, m),
            p + "mlp.dense_4h_to_h.bias": (h,),
        }
    shapes |= {"transformer.final_layernorm.weight": (h,), "transformer.final_layernorm.bias": (h,)}
    sd = {}
    for name, shape in shapes.items():
        if "layernorm.weight" in name:
            sd[name] = (1 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        else:
            sd[name] = (0.15 * rng.standard_normal(shape)).astype(np.float32)
    return sd


def official_batch_arrays(rng, length=24):
    """Three right-padded examples in the official format: tokens, position_ids [B, 2, L], sep.

    0: Part A only (bidirectional), padded.  1: two [MASK] spans, filled in the order 2nd, 1st.
    2: [sMASK] and [gMASK] blanks, [gMASK] filled first (a 6-token span), padded.
    """
    word = lambda n: list(rng.integers(1, 100, n))  # noqa: E731 - ordinary word ids
    examples = [
        ([CLS, *word(9)], []),
        ([CLS, *word(2), MASK, *word(3), MASK, *word(2)], [(7, word(3)), (3, word(2))]),
        ([CLS, *word(1), SMASK, *word(2), GMASK], [(5, word(6)), (2, word(4))]),
    ]
    tokens = np.full((3, length), PAD, np.int32)
    position_ids = np.zeros((3, 2, length), np.int32)
    sep = np.zeros(3, np.int32)
    for b, (part_a, spans) in enumerate(examples):
        row, positions, blocks = list(part_a), list(range(len(part_a))), [0] * len(part_a)
        for marker, span in spans:  # marker: the index of the blank's token in Part A
            assert part_a[marker] in BLANK_MARKERS
            row += [SOP, *span]
            positions += [marker] * (len(span) + 1)
            blocks += list(range(1, len(span) + 2))
        tokens[b, : len(row)] = row
        position_ids[b, 0, : len(row)], position_ids[b, 1, : len(row)] = positions, blocks
        sep[b] = len(part_a)
    return tokens, position_ids, sep


def glm_config(layers, hidden, heads, positions, scan=False):
    return GLMConfig(
        vocab_size=VOCAB_ROWS,
        num_layers=layers,
        hidden=hidden,
        heads=heads,
        max_len=positions,
        blank_markers=BLANK_MARKERS,
        scan_layers=scan,
    )


SIZES = [  # layers, hidden, heads, positions, scan_layers
    (2, 72, 18, 32, False),
    (3, 64, 4, 40, True),
    (1, 48, 6, 24, False),
]


@pytest.mark.parametrize("layers,hidden,heads,positions,scan", SIZES)
def test_forward_equals_numpy_reference_on_official_batches(layers, hidden, heads, positions, scan):
    rng = np.random.default_rng(layers * 100 + hidden)
    sd = official_state_dict(rng, layers, hidden, positions)
    tokens, position_ids, sep = official_batch_arrays(rng)
    expected = numpy_glm.forward(sd, heads, tokens, position_ids, sep)

    contract = official_batch.to_contract(tokens, position_ids, sep, BLANK_MARKERS)
    params = mapping.to_params(sd, heads, scan_layers=scan)
    config = glm_config(layers, hidden, heads, positions, scan)
    abstract = jax.eval_shape(lambda: nn.unbox(init_params(config, jax.random.key(0), 8)))
    assert jax.tree.map(np.shape, params) == jax.tree.map(lambda a: a.shape, abstract)  # the exact glm_jax tree
    logits = np.asarray(GLM(config).apply({"params": params}, contract))

    real = contract["segment_ids"] > 0
    assert real.sum() < real.size  # the batch has padding, and it is left out of the comparison
    assert np.abs(expected).max() > 1.0  # the reference is not trivially small
    np.testing.assert_allclose(logits[real], expected[real], rtol=0, atol=1e-5)


@pytest.mark.parametrize("layers,hidden,heads,positions,scan", SIZES)
def test_params_export_back_to_the_same_arrays(layers, hidden, heads, positions, scan, tmp_path):
    sd = official_state_dict(np.random.default_rng(1), layers, hidden, positions)
    params = mapping.to_params(sd, heads, scan_layers=scan)
    assert ("layers" in params) == scan
    back = mapping.to_official(params)
    assert list(back) == list(sd)
    for name in sd:
        np.testing.assert_array_equal(back[name], sd[name], err_msg=name)
    # Through a file, under the hub's prefix.
    torch_format.save(mapping.to_official(params, prefix="glm."), tmp_path / "pytorch_model.bin")
    read = convert.read_state_dict(str(tmp_path / "pytorch_model.bin"))
    assert sorted(read) == sorted(sd)
    for name in sd:
        np.testing.assert_array_equal(read[name].numpy(), sd[name], err_msg=name)


def test_qkv_layout_puts_heads_in_contiguous_slices():
    sd = official_state_dict(np.random.default_rng(0), 1, 72, 8)
    qkv = sd["transformer.layers.0.attention.query_key_value.weight"]  # rows: Q, K, V; heads of 4 rows
    kernel = mapping.to_params(sd, 18)["layers_0"]["attention"]["query_key_value"]["kernel"]
    np.testing.assert_array_equal(kernel[:, 1, 5, 2], qkv[72 + 5 * 4 + 2])  # K, head 5, dim 2


def test_official_batch_to_contract_fields():
    tokens, position_ids, sep = official_batch_arrays(np.random.default_rng(0))
    targets = np.roll(tokens, -1, axis=1)
    c = official_batch.to_contract(tokens, position_ids, sep, BLANK_MARKERS, targets=targets)
    np.testing.assert_array_equal(c["segment_ids"].sum(1), [10, 10 + 4 + 3, 6 + 7 + 5])
    # Example 1: the span at the 2nd [MASK] comes first (span id 2), then the 1st (span id 1).
    np.testing.assert_array_equal(c["span_ids"][1, 10:17], [2, 2, 2, 2, 1, 1, 1])
    # Example 2: [sMASK] is the 1st blank marker, [gMASK] the 2nd.
    np.testing.assert_array_equal(c["span_ids"][2, 6:18], [2] * 7 + [1] * 5)
    np.testing.assert_array_equal(c["loss_weights"], c["span_ids"] > 0)
    assert (c["targets"][c["segment_ids"] == 0] == 0).all()


def test_official_batch_inconsistencies_are_errors():
    tokens, position_ids, sep = official_batch_arrays(np.random.default_rng(0))
    bad = position_ids.copy()
    bad[1, 0, 12] = 4  # a Part B token pointing at an ordinary word
    with pytest.raises(ValueError, match="Example 1, position 12.*not a blank marker"):
        official_batch.to_contract(tokens, bad, sep, BLANK_MARKERS)
    bad = position_ids.copy()
    bad[2, 1, 8] = 5  # a block position that does not count up from sop
    with pytest.raises(ValueError, match="Example 2, position 8: official block position id 5"):
        official_batch.to_contract(tokens, bad, sep, BLANK_MARKERS)
    bad = position_ids.copy()
    bad[0, 0, 3] = 4  # Part A positions must be 0..sep-1
    with pytest.raises(ValueError, match="Example 0, position 3: official position id 4"):
        official_batch.to_contract(tokens, bad, sep, BLANK_MARKERS)
    with pytest.raises(ValueError, match="sep must be"):
        official_batch.to_contract(tokens, position_ids, [0, 3, 4], BLANK_MARKERS)
    # Part A counts in full even where it ends in the pad id (= eos with BERT); explicit lengths win.
    tokens[0, 9] = PAD
    c = official_batch.to_contract(tokens, position_ids, sep, BLANK_MARKERS)
    np.testing.assert_array_equal(c["segment_ids"].sum(1), [10, 17, 18])
    c = official_batch.to_contract(tokens, position_ids, sep, BLANK_MARKERS, lengths=[10, 16, 18])
    np.testing.assert_array_equal(c["segment_ids"].sum(1), [10, 16, 18])


# The values scripts/make_torch_fixtures.py saved with torch.save.
FIXTURE_VALUES = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 4,
    "f16": np.arange(4, dtype=np.float16) - np.float16(1.5),
    "bf16": np.arange(5, dtype=np.float32) * 0.5,
    "i64": np.arange(3, dtype=np.int64) * 1_000_000_007,
    "transposed": np.arange(12, dtype=np.float32).reshape(3, 4).T,
    "offset": np.arange(3, 7, dtype=np.float32),
    "shared_head": np.arange(4, dtype=np.float32),
    "shared_tail": np.arange(4, 10, dtype=np.float32).reshape(2, 3),
    "scalar": np.array(3.5, np.float32),
}


@pytest.mark.parametrize("name", ["torch_zip.pt", "torch_legacy.pt"])
def test_reads_files_written_by_torch(name):
    obj = torch_format.load(DATA / name)
    assert isinstance(obj, collections.OrderedDict) and list(obj) == list(FIXTURE_VALUES)
    for key, expected in FIXTURE_VALUES.items():
        value = obj[key].numpy()
        assert value.dtype == expected.dtype and value.shape == expected.shape, key
        np.testing.assert_array_equal(value, expected, err_msg=key)


def test_reads_a_training_checkpoint_under_module():
    obj = torch_format.load(str(DATA / "mp_rank_00_model_states.pt"))
    assert obj["iteration"] == 7 and isinstance(obj["args"], torch_format.Opaque)
    assert obj["args"].state["num_attention_heads"] == 2  # argparse.Namespace, kept inert
    sd = convert.read_state_dict(str(DATA / "mp_rank_00_model_states.pt"))
    assert list(sd) == mapping.official_names(1)
    assert mapping.infer_shape(sd) == mapping.Shape(num_layers=1, hidden=4, vocab_size=8, max_len=4, mlp_ratio=4)
    for k, name in enumerate(sd):
        shape = sd[name].shape
        expected = ((np.arange(np.prod(shape), dtype=np.float32) + 100 * k) / 64).astype(np.float16).reshape(shape)
        np.testing.assert_array_equal(sd[name].numpy(), expected, err_msg=name)
    params = mapping.to_params(sd, heads=2)
    assert params["layers_0"]["attention"]["query_key_value"]["kernel"].shape == (4, 3, 2, 2)
    assert params["word_embeddings"]["embedding"].dtype == np.float32


def test_writer_round_trip(tmp_path):
    import ml_dtypes

    obj = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "nested": {"h": np.arange(5, dtype=np.float16), "b": np.arange(3, dtype=np.float32).astype(ml_dtypes.bfloat16)},
        "view": np.arange(12, dtype=np.float32).reshape(3, 4).T,
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "ints": np.arange(4, dtype=np.int64),
        "meta": [1, "two", (3.0, None)],
    }
    torch_format.save(obj, tmp_path / "x.pt")
    back = torch_format.to_numpy(torch_format.load(tmp_path / "x.pt"))
    assert back["meta"] == [1, "two", (3.0, None)]
    for got, want in [(back["a"], obj["a"]), (back["view"], obj["view"]), (back["scalar"], obj["scalar"])]:
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(back["nested"]["h"], obj["nested"]["h"])
    np.testing.assert_array_equal(back["nested"]["b"], [0.0, 1.0, 2.0])  # bfloat16 read back as float32
    assert back["empty"].shape == (0, 3) and back["ints"].dtype == np.int64


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        torch_format.load(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="does not exist"):
        torch_format.load(tmp_path / "missing.bin")


def tiny_vocab(tmp_path):
    """A BERT-layout vocab.txt of 110 lines ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103)."""
    lines = [f"w{i}" for i in range(110)]
    for i, piece in [(0, "[PAD]"), (100, "[UNK]"), (101, "[CLS]"), (102, "[SEP]"), (103, "[MASK]")]:
        lines[i] = piece
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n")
    return f"wordpiece:{path}"


def test_command_line_convert_then_export(tmp_path, capsys):
    sd = official_state_dict(np.random.default_rng(5), 2, 72, 32)
    checkpoint = tmp_path / "mp_rank_00_model_states.pt"
    half = {f"glm.{k}": v.astype(np.float16) for k, v in sd.items()}
    torch_format.save({"module": half, "iteration": 3}, checkpoint)
    vocabulary = tiny_vocab(tmp_path)
    out = tmp_path / "converted"
    args = ["--checkpoint", str(checkpoint), "--workdir", str(out), "--model", "glm-515m", "--vocabulary", vocabulary]
    assert convert.main([*args, "--base_config", "configs/glm_tiny.py", "--scan_layers"]) == 0
    assert "2 layers, hidden 72, 18 heads, 128 embedding rows, positions up to 32" in capsys.readouterr().out

    model = workdir_lib.load(str(out))
    c = model.config
    assert (c.model.num_layers, c.model.hidden, c.model.heads, c.model.vocab_size) == (2, 72, 18, 128)
    assert c.model.max_len == 32 and c.data.seq_len == 32 and c.data.vocabulary == vocabulary
    assert c.model.scan_layers and c.optimizer.peak_lr == 1e-3  # training settings from the base config
    assert model.glm_config.blank_markers == BLANK_MARKERS

    exported = tmp_path / "pytorch_model.bin"
    assert convert.main(["--export", "--workdir", str(out), "--output", str(exported), "--prefix", "glm."]) == 0
    back = torch_format.load(exported)
    assert list(back) == list(half)
    for name in half:
        np.testing.assert_array_equal(back[name].numpy(), half[name].astype(np.float32), err_msg=name)
    assert convert.main(["--export", "--workdir", str(out), "--output", str(exported)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_bad_arguments_fail_clearly(tmp_path):
    sd = official_state_dict(np.random.default_rng(0), 1, 72, 8)
    path = tmp_path / "pytorch_model.bin"
    torch_format.save(sd, path)
    cases = [
        (dict(checkpoint=str(tmp_path / "nope.bin"), heads=18), "does not exist"),
        (dict(checkpoint=str(path), model="glm-huge"), "Unknown --model 'glm-huge'"),
        (dict(checkpoint=str(path)), "Give --heads N or --model NAME"),
        (dict(checkpoint=str(path), model="glm-large", heads=12), "contradicts"),
        (dict(checkpoint=str(path), heads=16), "16 heads do not divide the width 72"),
        (dict(checkpoint=str(path), heads=18, vocabulary="wordpiece:/no/vocab.txt"), "not found"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            convert.convert(workdir=str(tmp_path / "w"), **kwargs)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="already exists"):
        convert.convert(str(path), str(tmp_path / "used"), heads=18)

    del sd["transformer.layers.0.attention.dense.bias"], sd["transformer.final_layernorm.weight"]
    torch_format.save(sd, path)
    with pytest.raises(ValueError, match="lacks 2 official tensors: transformer.layers.0.attention.dense.bias, "):
        convert.convert(str(path), str(tmp_path / "w"), heads=18)
    assert not (tmp_path / "w").exists()
    assert convert.main(["--checkpoint", str(path), "--workdir", str(tmp_path / "w"), "--heads", "18"]) == 2


def test_damaged_files_and_missing_folders_are_one_line(tmp_path, capsys):
    sd = official_state_dict(np.random.default_rng(0), 1, 72, 8)
    path = tmp_path / "pytorch_model.bin"
    torch_format.save(sd, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted download
    assert convert.main(["--checkpoint", str(path), "--workdir", str(tmp_path / "w"), "--heads", "18"]) == 2
    err = capsys.readouterr().err
    assert f"{path} is a damaged or truncated zip file (" in err and err.count("\n") == 1
    missing = tmp_path / "no" / "such" / "folder" / "pytorch_model.bin"
    assert convert.main(["--export", "--workdir", str(tmp_path / "w"), "--output", str(missing)]) == 2
    assert f"the directory {missing.parent} does not exist; create it first" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    (tmp_path / "file").write_text("notes")
    with pytest.raises(ValueError, match="--workdir .*file is a file; name a new directory"):
        convert.convert(str(path), str(tmp_path / "file"), heads=18)


@pytest.mark.parametrize("name", ["word_embeddings.weight", "transformer.position_embeddings.weight",
                                  "transformer.layers.0.attention.dense.weight"])  # fmt: skip
def test_a_narrowed_tensor_is_the_one_reported(name):
    sd = official_state_dict(np.random.default_rng(0), 1, 72, 8)
    sd[name] = sd[name][..., :-8]
    with pytest.raises(ValueError, match=f"Inconsistent tensor shapes: {name} \\(\\d+, 64\\) \\(expected"):
        mapping.infer_shape(sd)


def test_known_heads_match_the_shipped_configs():
    from glm_jax import config as config_lib

    for name in ("glm-base", "glm-large", "glm-410m", "glm-515m", "glm-2b", "glm-10b"):
        config = ROOT / "configs" / f"{name.replace('-', '_')}.py"
        assert mapping.KNOWN_HEADS[name] == config_lib.load_config_file(config).model.heads
