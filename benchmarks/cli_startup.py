"""Start-up time of the command lines: the wall time of `python -m glm_jax.<command> --help`.

    python -m benchmarks.cli_startup [--runs 3]

Each command's `--help` runs `--runs` times in a fresh process; the table gives the fastest and the
median run. The commands define their flags before importing JAX, TensorFlow or SeqIO, so this
is Python, absl and the command module alone.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

COMMANDS = ("train", "finetune", "generate", "evaluate", "convert", "compile", "grid")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def help_seconds(command: str) -> float:
    """Wall time of one `--help` of `command`; fails if it does not exit 0."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", f"glm_jax.{command}", "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of each command")
    args = parser.parse_args()
    print(f"{'command':<10} {'min s':>7} {'median s':>9}   ({args.runs} runs each, {os.cpu_count()} CPUs)")
    for command in COMMANDS:
        times = [help_seconds(command) for _ in range(args.runs)]
        print(f"{command:<10} {min(times):>7.2f} {statistics.median(times):>9.2f}")


if __name__ == "__main__":
    main()
