"""One run per workdir: `WORKDIR/lock` names the run that holds it (host, pid, command, start).

A second run on the same workdir (a job launched twice) refuses to start, in one line naming the
holder, instead of writing every step twice and trimming the other's logs. The holder refreshes the
file's modification time every `REFRESH_SECONDS`; a lock is stale, and is taken over with a warning,
when its process has ended (same host) or it has not been refreshed for `STALE_SECONDS` (any host:
a preempted VM's lock). With several processes only process 0 locks (the others write no workdir
files of their own but through it).
"""

import datetime
import json
import os
import socket
import threading
import time
import uuid

import jax
from absl import logging

from glm_jax import console

NAME = "lock"
REFRESH_SECONDS = 30.0
STALE_SECONDS = 120.0


def _process_ended(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _holder(path: str) -> dict:
    """The lock's holder as written ({} if unreadable: written half, or by something else)."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def stale_because(holder: dict, age_seconds: float) -> str:
    """Why a lock with `holder`, last refreshed `age_seconds` ago, is stale ("" if it is held)."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if _process_ended(holder["pid"]):
            return f"its process {holder['pid']} has ended"
    if age_seconds > STALE_SECONDS:
        return f"not refreshed for {age_seconds:.0f} s"
    return ""


class WorkdirLock:
    """While entered (process 0), this run holds `workdir` (made if missing, and removed again at exit
    if still empty); a held workdir is a ValueError at enter."""

    def __init__(self, workdir: str, command: str):
        self.path = os.path.join(workdir, NAME)
        self.workdir, self.command = workdir, command
        self._token = uuid.uuid4().hex
        self._done = threading.Event()
        self._thread = None
        self._made_workdir = False

    def __enter__(self):
        if jax.process_index() != 0 or "://" in self.workdir:  # object stores have no exclusive create
            return self
        try:
            self._made_workdir = not os.path.isdir(self.workdir)
            os.makedirs(self.workdir, exist_ok=True)
            while not self._create():
                self._take_over_if_stale()
        except OSError as error:
            raise ValueError(
                f"--workdir {self.workdir} is not writable ({error.strerror or error}); choose a writable directory."
            ) from error
        self._thread = threading.Thread(target=self._refresh, name="workdir-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is None:
            return
        self._done.set()
        self._thread.join()
        if _holder(self.path).get("token") == self._token:
            os.remove(self.path)
        if self._made_workdir and not os.listdir(self.workdir):  # a run that failed before writing anything
            os.rmdir(self.workdir)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        holder = dict(host=socket.gethostname(), pid=os.getpid(), command=self.command, started=started)
        with os.fdopen(fd, "w") as f:
            json.dump({**holder, "token": self._token}, f)
        return True

    def _take_over_if_stale(self) -> None:
        holder = _holder(self.path)
        try:
            age = time.time() - os.path.getmtime(self.path)
        except FileNotFoundError:  # released meanwhile: try again
            return
        why = stale_because(holder, age)
        who = f"{holder.get('command', 'a run')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
        if not why:
            raise ValueError(
                f"{self.workdir} is in use by {who} since {holder.get('started', '?')}: wait for it to end or "
                f"use another --workdir (if that run is gone, delete {self.path})."
            )
        logging.warning("Taking over the stale lock %s of %s: %s.", self.path, who, why)
        console.say(f"taking over the stale lock of {who}: {why}")
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def _refresh(self) -> None:
        while not self._done.wait(REFRESH_SECONDS):
            try:
                os.utime(self.path)
            except OSError as error:
                logging.warning("Could not refresh the workdir lock %s: %s", self.path, error)
