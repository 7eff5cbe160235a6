"""What the commands share: console output of process 0, and an absl `main` around the `run` of the
single-process commands (generate, evaluate)."""

import jax
from absl import app, flags, logging


def say(message: str) -> None:
    """Console output of process 0 only."""
    if jax.process_index() == 0:
        print(message, flush=True)


def single_process_main(run, command: str):
    """An absl `main` that calls `run(flags)` and turns a ValueError (bad input) into a usage error."""

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)
        if jax.process_count() > 1:
            raise app.UsageError(f"{command} runs in one process (its devices may be many).")
        try:
            run(flags.FLAGS)
        except ValueError as error:
            raise app.UsageError(str(error)) from error

    return main
