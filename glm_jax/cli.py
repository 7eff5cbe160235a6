"""What the commands share: a quiet console, expected errors as one line, console output of process 0.

Every `python -m glm_jax.<command>` starts through `run` (absl flags) or, for convert's argparse,
`quiet` + `call`. The command modules import JAX, TensorFlow and SeqIO inside their `main`, after
the flags are parsed, so that `--help` answers at once. Nothing here takes effect on import: the
library used from Python keeps its logging as it is.

The console of a command: TensorFlow's C++ logging off (`TF_CPP_MIN_LOG_LEVEL=3` unless the
environment sets it, e.g. `TF_CPP_MIN_LOG_LEVEL=0` to see it all again), the banners that
TensorFlow's libraries print while they load (which ignore that setting) dropped, absl logging at
WARNING, and SeqIO's warning about uncached function datasets (the corpora here are streamed on
purpose) dropped. A bad input (a `ValueError` or `app.UsageError`, a bad flag) ends the command with
one line, `glm_jax.<command>: error: <message>`, on stderr and exit status 2; training stopped by a
signal (status 75) or a divergence (status 3) says so in one line; any other exception keeps its
traceback.
"""

import argparse
import contextlib
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable

from absl import app, flags, logging

from glm_jax.training.stops import TrainingStopped

BAD_INPUT = 2  # the exit status of a command given bad input
# Bad input, and a file system that refuses (read-only, no permission, full): one line each.
EXPECTED_ERRORS = (ValueError, app.UsageError, OSError)

# What TensorFlow's libraries print to stderr while they load, before any log level applies.
_LOAD_BANNERS = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
)
_SEQIO_UNCACHED = "Using an uncached FunctionDataset for training is not recommended"


def say(message: str) -> None:
    """Console output of process 0 only."""
    import jax

    if jax.process_index() == 0:
        print(message, flush=True)


def quiet() -> None:
    """The console settings of a command (see the module docstring); call before TensorFlow loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.get_absl_logger().addFilter(_not_seqio_uncached)  # a no-op the second time


def _not_seqio_uncached(record) -> bool:
    return not str(record.msg).startswith(_SEQIO_UNCACHED)


@contextlib.contextmanager
def _load_banners_dropped():
    """Sends file descriptor 2 to a temporary file meanwhile, then writes what it got to stderr
    without TensorFlow's load banners (they come from C++, past `sys.stderr`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _LOAD_BANNERS.search(line)))
            sys.stderr.flush()


def load_tensorflow() -> None:
    """Imports TensorFlow with its load banners dropped (nothing if it is loaded already)."""
    if "tensorflow" not in sys.modules:
        with _load_banners_dropped():
            import tensorflow  # noqa: F401


def one_line(error: BaseException) -> str:
    """The message of `error` on one line (a traceback quoted in it reduced to its last line)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    head, _, trace = text.partition("Traceback (most recent call last):")
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    if trace.strip():
        lines.append(trace.strip().splitlines()[-1].strip())
    return " ".join(lines) or type(error).__name__


def fail(command: str, message: str) -> int:
    """Prints `message` as the command's one error line on stderr; returns the exit status."""
    print(f"{command}: error: {message}", file=sys.stderr, flush=True)
    return BAD_INPUT


def call(command: str, function: Callable, *args, **kwargs) -> int:
    """`function(*args, **kwargs)` as a command: its result (None: 0) is the exit status; an expected
    error is printed as one line and gives status 2; training stopped on purpose (a signal, a
    divergence) prints why and gives its own status. Anything else propagates with its traceback."""
    try:
        result = function(*args, **kwargs)
    except EXPECTED_ERRORS as error:
        return fail(command, one_line(error))
    except TrainingStopped as stopped:
        print(f"{command}: {stopped}", file=sys.stderr, flush=True)
        return stopped.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside training's own handling (e.g. while starting)
        print(f"{command}: interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    return 0 if result is None else result


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the command `command`, a bad argument one error line (no usage) and status 2."""

    def __init__(self, command: str, **kwargs):
        super().__init__(**kwargs)
        self.command = command

    def error(self, message):
        sys.exit(fail(self.command, f"{message} (see --help)"))


def _parse_flags(command: str, argv: list[str]) -> list[str]:
    """absl's flag parsing, but `--help` exits 0 and a bad flag is one line with status 2; then
    TensorFlow loads (a config file may load it already), its banners dropped."""
    with _load_banners_dropped():
        try:
            rest = flags.FLAGS(argv)
        except SystemExit as done:  # absl's help flags print the help and exit with 1
            raise SystemExit(0 if done.code == 1 else done.code) from None
        except flags.Error as error:
            raise SystemExit(fail(command, f"{one_line(error)} (--help lists the flags)")) from None
        except (AttributeError, KeyError) as error:  # a --config.<path> that names no field
            cause = error.__context__ if isinstance(error.__context__, KeyError) else error
            raise SystemExit(fail(command, f"bad flag: {one_line(cause)}")) from None
        import tensorflow  # noqa: F401
    return rest


def run(main: Callable[[list[str]], object], command: str) -> None:
    """`app.run(main)` for the command `command` (e.g. "glm_jax.train"), with the console and errors
    of the module docstring. `main` raises a `ValueError` or `app.UsageError` for bad input."""
    quiet()

    def guarded(argv):
        logging.set_verbosity(logging.WARNING)
        return call(command, main, argv)

    app.run(guarded, flags_parser=lambda argv: _parse_flags(command, argv))


def no_arguments(argv: list[str]) -> None:
    """Rejects positional arguments (the commands take flags only)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]} (the command takes flags only; see --help)")


def config_value(name: str = "config"):
    """The value of the config-file flag `name`; a file that failed to load is a ValueError naming it."""
    flag = flags.FLAGS[name]
    if flag.value is None:
        return None
    try:
        flag.value.get  # noqa: B018  (config_flags defers a load failure to the first use)
    except OSError as error:
        cause = str(error.__cause__ or error).strip().splitlines()[-1].strip()
        raise ValueError(f"--{name}={flag.config_filename}: cannot load it ({cause})") from error
    return flag.value


def single_process_main(run_function: Callable, command: str) -> Callable[[list[str]], None]:
    """The `main` of a command that runs `run_function(flags.FLAGS)` in one process (its devices may be many)."""

    def main(argv):
        no_arguments(argv)
        import jax

        if jax.process_count() > 1:
            raise app.UsageError(f"{command} runs in one process (its devices may be many).")
        run_function(flags.FLAGS)

    return main
