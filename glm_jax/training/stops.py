"""Ways training ends early on purpose, each with its message and the process exit status."""


class TrainingStopped(Exception):
    """Training ended before `train.steps`; the message says why and what to do."""

    exit_code = 1


class Preempted(TrainingStopped):
    """Stopped by a signal after `step`, once that step's checkpoint was committed."""

    # "Try again later" (sysexits EX_TEMPFAIL): the launch scripts restart the run on seeing it.
    exit_code = 75

    def __init__(self, step: int, signal_name: str):
        self.step = step
        super().__init__(
            f"{signal_name}: stopped after step {step}, whose checkpoint is committed; "
            "run the same command again to continue."
        )


class StoppedStarting(TrainingStopped):
    """Stopped by a signal while starting (restoring, reading the first batch), before any step."""

    exit_code = Preempted.exit_code  # nothing is lost: the same command starts again

    def __init__(self, signal_name: str, step: int):
        super().__init__(
            f"{signal_name} while starting: stopped before training step {step + 1}; nothing was written "
            "since the last checkpoint. Run the same command again to continue."
        )


class Diverged(TrainingStopped):
    """A non-finite loss or norm at `step` (`train.on_nonfinite`); no checkpoint holds its update."""

    exit_code = 3

    def __init__(self, step: int, metrics: dict, reason: str):
        self.step = step
        shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("loss", "grad_norm", "update_norm"))
        super().__init__(
            f"training diverged at step {step} ({shown}): {reason}. The latest checkpoint is the last "
            "good one; lower optimizer.peak_lr or raise optimizer.warmup_fraction, or set "
            "train.on_nonfinite=skip to skip such steps."
        )
