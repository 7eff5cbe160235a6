"""Damaged checkpoints are moved aside and the newest good one restored; a full disk is one clear
error; converted workdirs hold parameters alone; config.json binds a workdir only once it holds a
checkpoint."""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import ROOT

from glm_jax import config as config_lib
from glm_jax import workdir
from glm_jax.model.glm import init_params
from glm_jax.training import checkpoints, checksums
from glm_jax.training.synthetic import synthetic_batch
from glm_jax.training.trainer import TrainState

SHARDING = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def tiny_state(step: int, flip: tuple[int, int] | None = None) -> TrainState:
    rng = np.random.default_rng(step)
    w = rng.standard_normal(4096).astype(np.float32)  # random: compresses poorly, one large data file
    if flip is not None:
        w.view(np.uint32)[flip[0]] ^= np.uint32(1 << flip[1])
    params = {"w": w, "b": np.full((3, 4), step, np.float32)}
    opt_state = {"mu": rng.standard_normal(16).astype(np.float32), "count": np.int32(step)}
    return jax.device_put(TrainState(step=np.int32(step), params=params, opt_state=opt_state), SHARDING)


ABSTRACT = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=SHARDING), tiny_state(0))


def config(keep: int = 5) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"train": {"keep_checkpoints": keep}})


def save_steps(path, steps=(1, 2), keep: int = 5):
    mngr = checkpoints.manager(str(path), config(keep))
    for step in steps:
        checkpoints.save(mngr, step, tiny_state(step), 10 * step)
    checkpoints.finish(mngr)
    checkpoints.close_quietly(mngr)


def assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


def data_files(step_dir):
    return [p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p)]


def largest_data_file(step_dir):
    return max(data_files(step_dir), key=os.path.getsize)


def missing_array_file(step_dir, _):
    largest_data_file(step_dir).unlink()


def truncated_array_file(step_dir, _):
    f = largest_data_file(step_dir)
    f.write_bytes(f.read_bytes()[: os.path.getsize(f) // 2])


def garbage_metadata(step_dir, _):
    (step_dir / "state" / "_METADATA").write_text("{not json")


def empty_step_directory(step_dir, _):
    shutil.rmtree(step_dir)
    step_dir.mkdir()


def flipped_bit_readable(step_dir, tmp_path):
    """The state of step 2 with one bit of one weight flipped, written by Orbax: it restores
    without error, only the checksum sees the difference."""
    other = tmp_path / "flipped"
    mngr = checkpoints.manager(str(other), config())
    checkpoints.save(mngr, 2, tiny_state(2, flip=(1234, 7)), 20)
    checkpoints.finish(mngr)
    checkpoints.close_quietly(mngr)
    shutil.rmtree(step_dir / "state")
    shutil.copytree(other / "checkpoints" / "2" / "state", step_dir / "state")


CASES = {
    missing_array_file: 'Error reading "params.w/0"',
    truncated_array_file: 'Error reading "params.w/0"',
    garbage_metadata: "JSONDecodeError",
    empty_step_directory: "its directory is empty",
    flipped_bit_readable: "checksums differ from the saved ones for 1 of 5 arrays: params['w']",
}


@pytest.mark.parametrize("damage", list(CASES), ids=lambda f: f.__name__)
def test_damaged_newest_checkpoint_falls_back_to_the_previous(damage, tmp_path, capsys, caplog):
    save_steps(tmp_path)
    damage(tmp_path / "checkpoints" / "2", tmp_path)
    mngr = checkpoints.manager(str(tmp_path), config())
    with caplog.at_level(logging.WARNING):
        state, position, _ = checkpoints.restore_latest(mngr, ABSTRACT)
    assert position == 10
    assert_same(state, tiny_state(1))
    out = capsys.readouterr().out
    moved = tmp_path / "checkpoints_corrupt" / "2"
    expected = f"Checkpoint step 2 in {tmp_path / 'checkpoints'} is damaged ("
    assert expected in out and CASES[damage] in out and f"moved it to {moved}." in out
    assert any(expected in r.getMessage() and CASES[damage] in r.getMessage() for r in caplog.records)
    assert "restored checkpoint step 1" in out
    assert moved.is_dir() and not (tmp_path / "checkpoints" / "2").exists()
    assert CASES[damage] in (tmp_path / "checkpoints_corrupt" / "2.reason.txt").read_text()
    assert mngr.all_steps() == [1]
    # Training goes on: the next save and restore work; a second damaged step 2 gets a suffix.
    checkpoints.save(mngr, 2, tiny_state(2), 20)
    checkpoints.finish(mngr)
    checkpoints.close_quietly(mngr)
    empty_step_directory(tmp_path / "checkpoints" / "2", tmp_path)
    mngr = checkpoints.manager(str(tmp_path), config())
    assert_same(checkpoints.restore_latest(mngr, ABSTRACT)[0], tiny_state(1))
    checkpoints.close_quietly(mngr)
    assert (tmp_path / "checkpoints_corrupt" / "2.1").is_dir()


def test_no_good_checkpoint_left_is_a_clear_error(tmp_path):
    save_steps(tmp_path, steps=(1, 2))
    truncated_array_file(tmp_path / "checkpoints" / "2", tmp_path)
    garbage_metadata(tmp_path / "checkpoints" / "1", tmp_path)
    mngr = checkpoints.manager(str(tmp_path), config())
    corrupt = tmp_path / "checkpoints_corrupt"
    with pytest.raises(ValueError, match=f"No checkpoint in .* can be restored: .* moved to {corrupt}/2, {corrupt}/1"):
        checkpoints.restore_latest(mngr, ABSTRACT)
    checkpoints.close_quietly(mngr)
    assert sorted(p.name for p in corrupt.iterdir() if p.is_dir()) == ["1", "2"]


def test_checksums_are_exact_and_see_one_bit():
    a = tiny_state(3)
    assert checksums.checksums(a) == checksums.checksums(jax.tree.map(jnp.copy, a))
    for word, bit in [(0, 0), (4095, 31), (17, 22)]:
        b = checksums.checksums(tiny_state(3, flip=(word, bit)))
        assert b["params"]["['w']"] != checksums.checksums(a)["params"]["['w']"]
        assert b["params"]["['b']"] == checksums.checksums(a)["params"]["['b']"]
    swapped = tiny_state(3)
    w = np.asarray(swapped.params["w"]).copy()
    w[[0, 1]] = w[[1, 0]]
    assert checksums.checksums({"w": w}) != checksums.checksums({"w": swapped.params["w"]})
    other = checksums.checksums({"x": jnp.arange(5, dtype=jnp.bfloat16), "k": jnp.ones((2,), jnp.bool_)})
    assert other["x"][""]["dtype"] == "bfloat16" and other["k"][""]["shape"] == [2]


def small_config():
    c = config_lib.load_config_file("configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads = 2, 32, 2
    c.data.seq_len = 64
    return c


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A workdir written like `convert` does (step 0, parameters alone) and its trainer and params."""
    c = small_config()
    trainer, _ = workdir.trainer_for(c)
    params = jax.tree.map(np.asarray, nn.unbox(init_params(trainer.glm_config, jax.random.key(3), 64)))
    path = tmp_path_factory.mktemp("converted") / "w"
    workdir.write(str(path), c, params)
    return path, c, trainer, params


def test_converted_workdir_holds_parameters_alone_and_trains_like_fresh_adam(converted, tmp_path):
    path, c, trainer, params = converted
    step0 = path / "checkpoints" / "0"
    meta = json.loads((step0 / "meta" / "metadata").read_text())
    assert meta["parts"] == ["step", "params"] and set(meta["checksums"]) == {"step", "params"}
    assert "opt_state" not in (step0 / "state" / "_METADATA").read_text()

    mngr = checkpoints.manager(str(path), c)
    with pytest.raises(ValueError, match="holds parameters alone; restoring it needs init_opt_state"):
        checkpoints.restore_latest(mngr, trainer.abstract_state)
    state, position, _ = checkpoints.restore_latest(
        mngr, trainer.abstract_state, init_opt_state=lambda p: trainer.optimizer.init(p)
    )
    checkpoints.close_quietly(mngr)
    assert position == 0 and int(state.step) == 0
    independent = trainer.state_from_params(params)  # the optimizer's own init, sharded
    assert jax.tree.structure(state) == jax.tree.structure(independent)
    assert_same(state, independent)
    batch = trainer.device_batch(synthetic_batch(8, 64, 128, np.random.default_rng(0)))
    after, metrics = trainer.train_step(state, batch)
    after_independent, metrics_independent = trainer.train_step(independent, batch)
    assert float(metrics["loss"]) == float(metrics_independent["loss"])
    assert_same(after, after_independent)


def test_load_and_restore_params_skip_a_damaged_checkpoint(converted, tmp_path, capsys):
    source, c, trainer, params = converted
    path = tmp_path / "w"
    shutil.copytree(source, path)
    mngr = checkpoints.manager(str(path), c)
    later = trainer.state_from_params(jax.tree.map(lambda p: p + 1, params))
    checkpoints.save(mngr, 5, later.replace(step=jnp.int32(5)), 7)
    checkpoints.finish(mngr)
    checkpoints.close_quietly(mngr)
    assert workdir.load(str(path)).step == 5

    truncated_array_file(path / "checkpoints" / "5", tmp_path)
    model = workdir.load(str(path))
    assert model.step == 0
    assert_same(model.params, params)
    assert "Checkpoint step 5" in capsys.readouterr().out
    assert (path / "checkpoints_corrupt" / "5").is_dir()

    # fine-tuning's --init: restore_params, here with a readable step whose values were swapped
    shutil.copytree(path / "checkpoints_corrupt" / "5", path / "checkpoints" / "5")
    shutil.rmtree(path / "checkpoints" / "5" / "state")
    shutil.copytree(source / "checkpoints" / "0" / "state", path / "checkpoints" / "5" / "state")
    restored, step = checkpoints.restore_params(str(path / "checkpoints"), trainer.abstract_state.params)
    assert step == 0
    assert_same(restored, params)
    assert "checksums differ from the saved ones" in capsys.readouterr().out
    assert (path / "checkpoints_corrupt" / "5.1").is_dir()


def test_config_json_binds_a_workdir_only_once_it_holds_a_checkpoint(tmp_path, capsys):
    c = small_config()
    checkpoints.check_or_write_config(str(tmp_path), c)
    (tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp").mkdir(parents=True)  # a partial save does not count
    changed = small_config()
    changed.data.seq_len = 32
    checkpoints.check_or_write_config(str(tmp_path), changed)
    assert "differs (data.seq_len: 64 → 32) but no checkpoint was written with it; replacing it" in (
        capsys.readouterr().out
    )
    assert json.loads((tmp_path / "config.json").read_text())["data"]["seq_len"] == 32
    (tmp_path / "checkpoints" / "3").mkdir()
    with pytest.raises(ValueError, match=r"different config \(data.seq_len: 32 → 64\)"):
        checkpoints.check_or_write_config(str(tmp_path), c)
    assert json.loads((tmp_path / "config.json").read_text())["data"]["seq_len"] == 32


def test_a_config_saved_before_keys_were_added_still_resumes(tmp_path):
    """config.json of an older glm_jax lacks keys added since (model.causal, ...): they are not compared; a
    changed key it has still is."""
    c = small_config()
    checkpoints.check_or_write_config(str(tmp_path), c)
    (tmp_path / "checkpoints" / "3").mkdir(parents=True)
    old = json.loads((tmp_path / "config.json").read_text())
    del old["model"]["causal"], old["model"]["block_positions"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    checkpoints.check_or_write_config(str(tmp_path), small_config())
    (tmp_path / "config.json").write_text(json.dumps(old))
    changed = small_config()
    changed.model.hidden = 2 * c.model.hidden
    with pytest.raises(ValueError, match=r"different config \(model: "):
        checkpoints.check_or_write_config(str(tmp_path), changed)


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    sys.path.insert(0, {tests!r})
    from test_checkpoint_recovery import config, tiny_state
    from glm_jax.training import checkpoints
    import jax, numpy as np

    mngr = checkpoints.manager({workdir!r}, config(keep=1))
    checkpoints.save(mngr, 1, tiny_state(1), 10)
    checkpoints.finish(mngr)
    big = tiny_state(2).replace(params={{"w": jax.numpy.asarray(np.random.default_rng(0).standard_normal(4096 * 64,
        np.float32)), "b": tiny_state(2).params["b"]}})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    try:
        checkpoints.save(mngr, 2, big, 20)
        checkpoints.finish(mngr)
    except checkpoints.CheckpointSaveError as error:
        print("ERROR:", error)
    finally:
        checkpoints.close_quietly(mngr)
    """
)


def test_full_disk_is_one_clear_error_and_keeps_the_earlier_checkpoint(tmp_path):
    script = FULL_DISK.format(tests=str(ROOT / "tests"), workdir=str(tmp_path))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, result.stdout
    message = lines[0]
    assert f"Could not write checkpoint {tmp_path / 'checkpoints' / '2'} (EFBIG: File too large)" in message
    assert "GiB free of" in message and "on that file system" in message
    assert "The checkpoints already written (1) are intact" in message and "resume from step 1" in message
    for noise in ("Traceback", "Exception ignored", "shutdown"):
        assert noise not in result.stderr, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]  # no partial directory left
    mngr = checkpoints.manager(str(tmp_path), config())
    state, position, _ = checkpoints.restore_latest(mngr, ABSTRACT)
    checkpoints.close_quietly(mngr)
    assert position == 10
    assert_same(state, tiny_state(1))
