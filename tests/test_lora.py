"""LoRA adapters and frozen parameters: a fresh adapter leaves the model as it was, merged adapters give the
same forward, a LoRA step moves the adapters alone and keeps optimizer state for them alone, and a LoRA
fine-tuning run checkpoints its adapters with the reference of its base, resumes exactly after SIGTERM and
refuses a changed or missing base."""

import dataclasses
import functools
import json
import os
import shutil
import signal

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import ROOT
from jax.sharding import PartitionSpec as P
from test_finetune import init_dir, read_jsonl, tiny_config  # noqa: F401 - init_dir is a fixture

from glm_jax import config as config_lib
from glm_jax import pretraining
from glm_jax import workdir as workdir_lib
from glm_jax.downstream import finetuning_job
from glm_jax.model import lora
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.training import frozen_base, sharding, stops, trainable
from glm_jax.training.synthetic import TOKENS, synthetic_batch
from glm_jax.training.trainer import Trainer

VOCAB, LENGTH = 128, 24
BATCH = synthetic_batch(2, LENGTH, VOCAB, np.random.default_rng(0))


def _model(scan_layers=False, rank=0) -> GLMConfig:
    adapters = lora.LoRAConfig(rank=rank, alpha=8.0) if rank else lora.OFF
    return GLMConfig(vocab_size=VOCAB, num_layers=2, hidden=32, heads=4, max_len=LENGTH,
                     blank_markers=TOKENS.blank_markers, scan_layers=scan_layers, lora=adapters)  # fmt: skip


@functools.partial(jax.jit, static_argnums=0)
def _logits(config, params):
    return GLM(config).apply({"params": params}, BATCH)


def _forward(config, params):
    return np.asarray(_logits(config, params))


def _is_adapter(path) -> bool:
    return lora.ADAPTER in path


@pytest.mark.parametrize("scan_layers", [False, True], ids=["unrolled", "scanned"])
def test_a_fresh_adapter_leaves_the_model_as_it_was(scan_layers):
    base = nn.unbox(init_params(_model(scan_layers), jax.random.key(0), LENGTH))
    adapted = nn.unbox(init_params(_model(scan_layers, rank=4), jax.random.key(0), LENGTH))
    leaves = trainable.flat(adapted)
    kept = {path: x for path, x in leaves.items() if not _is_adapter(path)}
    jax.tree.map(np.testing.assert_array_equal, trainable.nest(kept), base)  # the base draws are unchanged
    adapters = {path: x for path, x in leaves.items() if _is_adapter(path)}
    assert len(adapters) == 4 * 2 * (1 if scan_layers else 2)  # a and b of 4 projections (in 2 layers, or stacked)
    for path, x in adapters.items():
        if path[-1] == "b":
            assert not np.any(x)
        else:  # Kaiming-uniform with a = sqrt(5): U(±1/sqrt(fan_in)), fan_in 32 (qkv, dense, h_to_4h) or 128
            bound = 1 / np.sqrt(128 if "dense_4h_to_h" in path else 32)
            assert np.all(np.abs(x) <= bound) and np.abs(x).max() > 0.9 * bound
    # B = 0 adds exact zeros; XLA's algebraic simplifier regroups the sums of the unrolled program around the
    # new products, which moves some logits by an ulp or a few (bitwise equal with --xla_disable_hlo_passes=algsimp).
    fresh, before = _forward(_model(scan_layers, rank=4), adapted), _forward(_model(scan_layers), base)
    np.testing.assert_allclose(fresh, before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scan_layers", [False, True], ids=["unrolled", "scanned"])
def test_merged_adapters_give_the_same_forward(scan_layers):
    config = _model(scan_layers, rank=4)
    rng = np.random.default_rng(1)
    leaves = trainable.flat(nn.unbox(init_params(config, jax.random.key(0), LENGTH)))
    random = {p: rng.normal(0, 0.1, x.shape).astype(np.float32) if _is_adapter(p) else x for p, x in leaves.items()}
    params = trainable.nest(random)
    merged = lora.merge(params, config.lora.scale)
    dense = dataclasses.replace(config, lora=lora.OFF)
    base = trainable.nest({p: x for p, x in leaves.items() if not _is_adapter(p)})
    assert jax.tree.structure(merged) == jax.tree.structure(base)
    adapted = _forward(config, params)
    assert np.abs(adapted - _forward(dense, base)).max() > 1e-2  # the adapters matter
    np.testing.assert_allclose(_forward(dense, merged), adapted, rtol=0, atol=1e-6)


def test_trainable_parameters_by_group_and_glob():
    params = trainable.nest({
        ("layers_0", "mlp", "dense_h_to_4h", "kernel"): np.zeros((4, 8)),
        ("layers_0", "mlp", "dense_h_to_4h", "bias"): np.zeros(8),
        ("layers_0", "mlp", "dense_h_to_4h", "lora", "a"): np.zeros((4, 2)),
        ("layers_0", "mlp", "dense_h_to_4h", "lora", "b"): np.zeros((2, 8)),
        ("final_layernorm", "scale"): np.ones(4),
        ("classifier", "pool_layer", "kernel"): np.zeros((4, 4)),
    })  # fmt: skip
    selection = trainable.Selection("lora,*/bias", lora_rank=2, always=("classifier",))
    selection.check(params)
    kept, frozen = selection.split(params)
    names = lambda tree: sorted(trainable.path_name(p) for p in trainable.flat(tree))  # noqa: E731
    assert names(kept) == [
        "classifier/pool_layer/kernel", "layers_0/mlp/dense_h_to_4h/bias",
        "layers_0/mlp/dense_h_to_4h/lora/a", "layers_0/mlp/dense_h_to_4h/lora/b",
    ]  # fmt: skip
    assert names(selection.join(kept, frozen)) == names(params)
    assert trainable.Selection("auto", lora_rank=2).spec == "lora" and not trainable.Selection("auto").freezes
    assert selection.summary(params) == "trainable 48 of 84 parameters (57.14%): lora,*/bias, and the new classifier"
    for spec, message in [
        ("*/bais", r"'\*/bais' matches no parameter \(paths read layers_0/mlp/dense_h_to_4h/kernel\)"),
        ("*/bias", r"freezes the LoRA adapters \(e.g. layers_0/mlp/dense_h_to_4h/lora/a\)"),
        ("", "train.trainable is empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            trainable.Selection(spec, lora_rank=2).check(params)
    with pytest.raises(ValueError, match="'lora' matches no LoRA adapter: set lora.rank > 0"):
        trainable.Selection("lora").check(selection.split(params)[1])


def _trainer(scan_layers: bool, remat: str = "none", microbatches: int = 1, mesh=(1, 1, 1)) -> Trainer:
    c = config_lib.base_config()
    c.model.update(num_layers=2, hidden=32, heads=4, dropout=0.1, attention_dropout=0.0, attention="xla")
    c.model.update(scan_layers=scan_layers, remat=remat)
    c.data.update(seq_len=LENGTH, batch_size=8)
    c.optimizer.update(peak_lr=1e-2, warmup_fraction=0.0)
    c.train.update(steps=10, microbatches=microbatches)
    c.lora.update(rank=4, dropout=0.1)
    devices = jax.devices()[: int(np.prod(mesh))]
    return Trainer(c, config_lib.model_config(c, VOCAB, TOKENS), sharding.make_mesh(*mesh, devices=devices))


@pytest.mark.parametrize("layers", ["unrolled", "scanned, full remat, 2 microbatches"])
def test_a_lora_step_moves_the_adapters_alone(layers):
    scanned = layers != "unrolled"
    # The adapters shard as their kernels (fsdp over embed, tensor over heads), their rank axis whole.
    shardings = _trainer(scanned, mesh=(2, 2, 2)).state_shardings.params
    qkv, stack = shardings["layers" if scanned else "layers_0"]["attention"]["query_key_value"], (None,) * scanned
    assert qkv["lora"]["a"].spec == P(*stack, "fsdp", None)
    assert qkv["lora"]["b"].spec == P(*stack, None, None, "tensor", None)
    trainer = _trainer(scanned, "full" if scanned else "none", 2 if scanned else 1)
    state = trainer.init_state(0)
    # Optimizer state for the adapters alone: Adam's two moments of each, and two step counts.
    adapters = [x.shape for path, x in trainable.flat(state.params).items() if _is_adapter(path)]
    moments = sorted(x.shape for x in jax.tree.leaves(state.opt_state) if x.ndim)
    assert moments == sorted(adapters * 2) and len(jax.tree.leaves(state.opt_state)) == 2 * len(adapters) + 2
    before = trainable.flat(jax.device_get(state.params))
    batch = trainer.device_batch(synthetic_batch(8, LENGTH, VOCAB, np.random.default_rng(2)))
    for _ in range(2):  # B leaves 0 in the first step; A's gradient is nonzero from the second
        state, metrics = trainer.train_step(state, batch)
        assert not bool(metrics["nonfinite"])
    after = trainable.flat(jax.device_get(state.params))
    for path, x in before.items():
        if _is_adapter(path):
            assert not np.array_equal(after[path], x), path
        else:
            np.testing.assert_array_equal(after[path], x, err_msg=str(path))


EPOCHS = 4  # 3 steps each (24 questions of 8)


def _lora_config(**lora):
    c = tiny_config()
    c.finetune.epochs = EPOCHS
    c.lora.update({"rank": 4, **lora})
    c.model.dropout = 0.1
    c.train.update(log_every=1, checkpoint_every=2)
    return c


def _outcome(workdir):
    """Each logged record (timings aside), the predictions and the best steps: what a resumed run must equal."""
    timing = ("steps_per_s", "tokens_per_s", "tflops_per_device", "mfu")
    records = [{k: v for k, v in r.items() if k not in timing} for r in read_jsonl(workdir / "metrics.jsonl")]
    best = sorted(int(p.name) for p in (workdir / "best").iterdir() if p.name.isdigit())
    return records, read_jsonl(workdir / "predictions_validation.jsonl"), best


def _meta(directory):
    return json.loads((directory / "meta" / "metadata").read_text())


@pytest.fixture(scope="module")
def base(init_dir, tmp_path_factory):  # noqa: F811
    """A copy of the tiny --init workdir that tests may change (and put back)."""
    path = tmp_path_factory.mktemp("base") / "w"
    shutil.copytree(init_dir, path)
    return path


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lora") / "run"
    finetuning_job.run(_lora_config(), str(base), str(workdir))
    return workdir


def test_checkpoints_hold_the_adapters_and_the_reference_of_the_base(base, reference):
    meta = _meta(reference / "checkpoints" / str(3 * EPOCHS))
    assert meta["parts"] == ["step", "params", "opt_state"]
    stored = meta["checksums"]["params"]
    assert len(stored) == 16 and all("['lora']" in name for name in stored)
    assert meta["base"]["origin"] == {"workdir": str(base)}
    frozen = meta["base"]["checksums"]
    assert not set(frozen) & set(stored) and all("['lora']" not in name for name in frozen)
    assert meta["base"]["digest"] == frozen_base.digest(frozen)
    best = reference / "best" / str(_outcome(reference)[2][0])
    assert set(_meta(best)["checksums"]["params"]) == set(stored) and _meta(best)["base"] == meta["base"]
    elements = lambda sums: sum(int(np.prod(entry["shape"])) for entry in sums.values())  # noqa: E731
    # Per layer, A and B of rank 4 for qkv (32 → 96), dense (32 → 32), h_to_4h (32 → 128), 4h_to_h (128 → 32).
    assert elements(stored) == 2 * (32 * 4 + 4 * 96 + 32 * 4 + 4 * 32 + 32 * 4 + 4 * 128 + 128 * 4 + 4 * 32) == 4096
    assert elements(stored) + elements(frozen) == 295_872  # the model's, adapters included
    # The merged model: trained adapters folded into the kernels, every other array the base's.
    model, start = workdir_lib.load(str(reference)), workdir_lib.load(str(base))
    assert model.glm_config.lora.rank == 0
    merged, pretrained = trainable.flat(model.params), trainable.flat(start.params)
    assert merged.keys() == pretrained.keys()
    for path, x in pretrained.items():
        same = np.array_equal(merged[path], x)
        assert same != (path[-1] == "kernel" and path[0].startswith("layers")), path


def test_sigterm_then_resume_is_exact(base, reference, tmp_path, monkeypatch):
    evaluate = finetuning_job.evaluate

    def evaluate_then_stop(c, kind, params, data, workdir, step):  # SIGTERM in the evaluation after step 6
        scores = evaluate(c, kind, params, data, workdir, step)
        if step == 6 and not (tmp_path / "run" / "checkpoints" / "8").exists():
            os.kill(os.getpid(), signal.SIGTERM)
        return scores

    monkeypatch.setattr(finetuning_job, "evaluate", evaluate_then_stop)
    with pytest.raises(stops.Preempted, match="stopped after step 7"):
        finetuning_job.run(_lora_config(), str(base), str(tmp_path / "run"))
    assert "base" in _meta(tmp_path / "run" / "checkpoints" / "7")
    finetuning_job.run(_lora_config(), str(base), str(tmp_path / "run"))
    assert _outcome(tmp_path / "run") == _outcome(reference)  # losses, evaluations, predictions, best/: bitwise


def test_a_changed_or_missing_base_is_refused(base, reference, tmp_path):
    with pytest.raises(ValueError, match="holds a run with a different config \\(lora: "):
        finetuning_job.run(_lora_config(rank=0), str(base), str(reference))
    everything = _lora_config()
    everything.train.trainable = "all"
    with pytest.raises(ValueError, match="holds checkpoints of some parameters only, on the base workdir"):
        finetuning_job.run(everything, str(base), str(reference))
    kept = tmp_path / "kept"
    shutil.move(base, kept)
    try:
        c = workdir_lib.read_config(str(kept))
        params = jax.tree.map(np.asarray, workdir_lib.load(str(kept)).params)
        params["final_layernorm"]["bias"] = params["final_layernorm"]["bias"] + 1e-3
        workdir_lib.write(str(base), c, params)
        changed = rf"{reference} was trained on the base workdir {base}, which has changed: 1 of \d+ frozen arrays"
        with pytest.raises(frozen_base.BaseChanged, match=changed):
            finetuning_job.run(_lora_config(), str(base), str(reference))
        with pytest.raises(frozen_base.BaseChanged, match=changed):
            workdir_lib.load(str(reference))
        shutil.rmtree(base / "checkpoints")
        with pytest.raises(ValueError, match=rf"{reference} was trained on the base workdir {base}, which cannot be"):
            finetuning_job.run(_lora_config(), str(base), str(reference))
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.move(kept, base)
    scores = finetuning_job.run(None, "", str(reference), eval_only=True)  # best/ with its base, put back
    assert scores["accuracy"] == max(
        r["eval_accuracy"] for r in read_jsonl(reference / "metrics.jsonl") if "eval_accuracy" in r
    )


def test_continued_pretraining_trains_adapters_on_its_init(base, tmp_path, capsys):
    c = config_lib.load_config_file(ROOT / "configs/glm_tiny.py")
    c.model.update(num_layers=2, hidden=32, heads=2)  # the --init model's
    c.data.update(seq_len=64, batch_size=8, eval_batches=1, unigram_batches=1)
    c.train.update(steps=2, log_every=1, checkpoint_every=2)
    c.lora.rank = 4
    pretraining.run(c, str(tmp_path / "run"), str(base))
    assert "trainable 4,096 of 295,872 parameters (1.38%): lora" in capsys.readouterr().out
    meta = _meta(tmp_path / "run" / "checkpoints" / "2")
    assert meta["base"]["origin"] == {"workdir": str(base)}
    assert len(meta["checksums"]["params"]) == 16 and all("['lora']" in n for n in meta["checksums"]["params"])
