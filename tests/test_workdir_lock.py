"""One run per workdir: the lock file, its refusal, stale takeover and release (in-process)."""

import json
import os
import socket
import subprocess
import time

import pytest

from glm_jax.training import workdir_lock
from glm_jax.training.workdir_lock import WorkdirLock


def _ended_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _write_lock(workdir, age_seconds=0.0, **holder):
    path = workdir / "lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "command": "x", **holder}))
    os.utime(path, (time.time() - age_seconds,) * 2)
    return path


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    with WorkdirLock(str(tmp_path / "w"), "glm_jax.train"):
        holder = json.loads((tmp_path / "w" / "lock").read_text())
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        assert holder["command"] == "glm_jax.train"
        with pytest.raises(ValueError, match=f"is in use by glm_jax.train \\(pid {os.getpid()} on "):
            WorkdirLock(str(tmp_path / "w"), "glm_jax.finetune").__enter__()
    assert not (tmp_path / "w" / "lock").exists()


@pytest.mark.parametrize("ended,age", [(True, 0.0), (False, 3 * workdir_lock.STALE_SECONDS)])
def test_stale_locks_are_taken_over_with_a_warning(tmp_path, capsys, ended, age):
    """Stale: this host's holder process has ended (kill -9), or the lock is not refreshed (a lost VM)."""
    holder = dict(host=socket.gethostname(), pid=_ended_pid()) if ended else dict(host="another-host", pid=12)
    _write_lock(tmp_path, age, **holder)
    why = workdir_lock.stale_because(holder, age)
    assert why == (f"its process {holder['pid']} has ended" if ended else f"not refreshed for {age:.0f} s")
    with WorkdirLock(str(tmp_path), "glm_jax.train"):
        assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
    who = f"x (pid {holder['pid']} on {holder['host']})"
    assert f"taking over the stale lock of {who}: {why}" in capsys.readouterr().out


def test_a_fresh_lock_of_another_host_or_a_live_process_is_held(tmp_path):
    assert workdir_lock.stale_because({"host": "another-host", "pid": 1}, 5.0) == ""
    assert workdir_lock.stale_because({"host": socket.gethostname(), "pid": os.getpid()}, 5.0) == ""
    path = _write_lock(tmp_path, 5.0, host="another-host", pid=12)
    with pytest.raises(ValueError, match="in use by x \\(pid 12 on another-host\\).*delete .*lock"):
        WorkdirLock(str(tmp_path), "glm_jax.train").__enter__()
    assert json.loads(path.read_text())["pid"] == 12  # left as it was


def test_the_holder_refreshes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(workdir_lock, "REFRESH_SECONDS", 0.05)
    with WorkdirLock(str(tmp_path), "glm_jax.train"):
        os.utime(tmp_path / "lock", (0, 0))
        time.sleep(0.5)
        assert time.time() - os.path.getmtime(tmp_path / "lock") < 5
