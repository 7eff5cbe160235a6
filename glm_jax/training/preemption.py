"""Stopping on SIGTERM (preemption, maintenance) and SIGINT (Ctrl-C) after a step, with a checkpoint.

While a one-process run starts (restoring, reading its first batch) a signal ends it at once
(`StoppedStarting`, exit 75). Then the training loop asks `should_stop(step)` after every step. In
one process the first signal sets a flag; on several, JAX's preemption sync service (started by
`jax.distributed.initialize`, which catches SIGTERM itself) makes every host answer True at the
same step, through Orbax's `CheckpointManager.reached_preemption`. SIGINT is passed on to that
service as a SIGTERM of this process. A second SIGINT (or, in one process, a second SIGTERM) exits
at once.
"""

import os
import signal
import threading

import jax

from glm_jax.training import stops


class StopSignals:
    """While entered, SIGTERM and SIGINT ask training to stop after the current step."""

    def __init__(self, mngr):
        self._mngr = mngr
        self._multi = jax.process_count() > 1
        self.received = None  # the first signal's name
        self.starting_at = None  # while starting: the step restored (nothing to save yet)
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        names = ("SIGINT",) if self._multi else ("SIGTERM", "SIGINT")  # JAX's service owns SIGTERM
        for name in names:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number, frame):
        name = signal.Signals(number).name
        if self.starting_at is not None and not self._multi:  # hosts stop together, after a step
            raise stops.StoppedStarting(name, self.starting_at)
        if self.received is not None:
            os.write(2, f"\n{name} again: exiting without a checkpoint.\n".encode())
            os._exit(128 + number)
        self.received = name
        os.write(2, f"\n{name}: stopping after this step with a checkpoint ({name} again exits at once).\n".encode())
        if self._multi:
            os.kill(os.getpid(), signal.SIGTERM)  # JAX's preemption notifier tells the other hosts

    def should_stop(self, step: int) -> bool:
        """Whether to stop after `step` (on all hosts the same step); call it after every step."""
        if self._multi:
            stop = self._mngr.reached_preemption(step)
            if stop and self.received is None:
                self.received = "SIGTERM"
            return stop
        return self.received is not None
