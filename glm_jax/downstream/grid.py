"""Seed and learning-rate grids of fine-tuning, as the official `scripts/finetune_superglue_grid.sh`
and `process_grid.py`: `run` fine-tunes one config for every (lr, seed) into `ROOT/lr{lr}_seed{seed}`,
records each finished run's best evaluation as a line of `ROOT/grid.jsonl`, and `summarize` gives,
per task, the mean and sample std over seeds of every score for each learning rate, the best learning
rate (by the mean of the task's main metric) and the best single run.

A run is finished once `grid.jsonl` holds its line: a rerun skips it, and resumes the others (the
fine-tuning resumes itself from its workdir).
"""

import concurrent.futures
import decimal
import json
import math
import statistics
import subprocess
import sys
import threading

import ml_collections
from etils import epath

from glm_jax import workdir as workdir_lib
from glm_jax.downstream import finetuning_job
from glm_jax.training import stops

GRID_FILE = "grid.jsonl"  # one line per finished run: task, metric, lr, seed, workdir, step, scores
SUMMARY_FILE = "grid_summary.jsonl"  # one line per task: the output of `summarize`
GRIDDED = ("optimizer.peak_lr", "train.seed")  # the config keys a grid sets for each run


def _parse(flag: str, values: list[str], convert, valid, what: str) -> list:
    """`values` converted, or a ValueError naming `flag` (empty, not a `what`, invalid, repeated)."""
    if not values:
        raise ValueError(f"--{flag} is empty: give one or more comma-separated values.")
    parsed = []
    for text in values:
        try:
            value = convert(text.strip())
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise ValueError(f"--{flag}: {text!r} is not {what}.")
        if value in parsed:
            raise ValueError(f"--{flag}: {text!r} is given twice.")
        parsed.append(value)
    return parsed


def parse_seeds(values: list[str]) -> list[int]:
    return _parse("seeds", values, int, lambda s: s >= 0, "an integer >= 0")


def parse_lrs(values: list[str]) -> list[float]:
    return _parse("lrs", values, float, lambda lr: math.isfinite(lr) and lr > 0, "a learning rate > 0")


def check_overrides(keys) -> None:
    """The grid sets `GRIDDED` itself: a command-line override of one is an error."""
    for key in GRIDDED:
        if key in keys:
            raise ValueError(f"--config.{key} is set by the grid (--lrs, --seeds); leave it out.")


def lr_text(lr: float) -> str:
    """The shortest exact scientific notation of `lr`: 1e-5, 2.5e-5."""
    return format(decimal.Decimal(repr(lr)).normalize(), "e")


def run_name(lr: float, seed: int) -> str:
    return f"lr{lr_text(lr)}_seed{seed}"


def run_config(c: ml_collections.ConfigDict, lr: float, seed: int) -> ml_collections.ConfigDict:
    """`c` with the learning rate and seed of one run."""
    c = ml_collections.ConfigDict(c.to_dict())
    c.optimizer.peak_lr, c.train.seed = lr, seed
    return c


def _score(value) -> float:
    """A score to compare: a non-finite one (null in the logs) ranks last."""
    return -math.inf if value is None or not math.isfinite(value) else value


def best_evaluation(workdir: str, metric: str) -> tuple[int, dict]:
    """(step, scores) of the best evaluation in `workdir/metrics.jsonl` by `metric` (the later on a
    tie, as `best/` keeps them first)."""
    path = epath.Path(workdir) / "metrics.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    evaluations = [line for line in lines if f"eval_{metric}" in line]
    if not evaluations:
        raise ValueError(f"{path} records no evaluation of {metric}.")
    best = max(evaluations, key=lambda line: (_score(line[f"eval_{metric}"]), line["step"]))
    return best["step"], {k.removeprefix("eval_"): v for k, v in best.items() if k.startswith("eval_")}


def read_records(root: str) -> list[dict]:
    path = epath.Path(root) / GRID_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _summarize_task(task: str, runs: list[dict]) -> dict:
    metric = runs[0]["metric"]
    names = [metric, *(k for k in runs[0]["scores"] if k != metric)]
    runs = sorted(runs, key=lambda r: (r["lr"], r["seed"]))
    lrs = []
    for lr in sorted({r["lr"] for r in runs}):
        group = [r for r in runs if r["lr"] == lr]
        values = {k: [math.nan if r["scores"].get(k) is None else r["scores"][k] for r in group] for k in names}
        lrs.append({
            "lr": lr,
            "seeds": [r["seed"] for r in group],
            "mean": {k: _number(statistics.fmean(v)) for k, v in values.items()},
            "std": {k: _number(statistics.stdev(v)) if len(v) > 1 else None for k, v in values.items()},
        })  # fmt: skip
    best_lr = max(lrs, key=lambda row: _score(row["mean"][metric]))["lr"]
    best_run = max(runs, key=lambda r: _score(r["scores"][metric]))
    return {"task": task, "metric": metric, "best_lr": best_lr, "lrs": lrs, "best_run": best_run}


def summarize(records: list[dict]) -> list[dict]:
    """Per task (in order of appearance): `lrs`, one row per learning rate (ascending) with its seeds and
    the `mean` and sample `std` over them of every score (None with one seed, or a non-finite score);
    `best_lr` by the mean of the main `metric` and `best_run` by it (the first in lr, seed order on a tie)."""
    tasks = {}
    for record in records:
        tasks.setdefault(record["task"], []).append(record)
    return [_summarize_task(task, runs) for task, runs in tasks.items()]


def _text(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def markdown(summary: dict) -> str:
    """One task's summary as a Markdown table, the best learning rate marked, and its best run."""
    metric, names = summary["metric"], list(summary["lrs"][0]["mean"])
    lines = [
        f"### {summary['task']}: mean ± std over seeds (main metric {metric})",
        "",
        "| lr | seeds | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for row in summary["lrs"]:
        lr = lr_text(row["lr"]) + (" (best)" if row["lr"] == summary["best_lr"] else "")
        cells = [f"{_text(row['mean'][k])} ± {_text(row['std'][k])}" for k in names]
        lines.append(f"| {lr} | {','.join(map(str, row['seeds']))} | " + " | ".join(cells) + " |")
    run = summary["best_run"]
    scores = " | ".join(f"{k} {_text(v)}" for k, v in run["scores"].items())
    where = f"lr {lr_text(run['lr'])}, seed {run['seed']}, step {run['step']} ({run['workdir']})"
    return "\n".join([*lines, "", f"best run: {where}: {scores}"])


class _Records:
    """`ROOT/grid.jsonl`: the finished runs of the grid's task (lines may come from several threads)."""

    def __init__(self, root: str, task: str):
        self.path, self.task, self.lock = epath.Path(root) / GRID_FILE, task, threading.Lock()
        recorded = read_records(root)
        others = {r["task"] for r in recorded} - {task}
        if others:
            raise ValueError(f"{self.path} records a grid of {sorted(others)}, not {task}: use another --workdir.")
        self.done = {(r["lr"], r["seed"]) for r in recorded}

    def add(self, lr: float, seed: int, workdir: str, metric: str) -> None:
        step, scores = best_evaluation(workdir, metric)
        record = {"task": self.task, "metric": metric, "lr": lr, "seed": seed, "workdir": workdir, "step": step,
                  "scores": scores}  # fmt: skip
        with self.lock, self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _subprocess(args: list[str], name: str) -> int:
    """`python -m glm_jax.finetune ARGS`, its output relayed line by line behind `[name]`; its status."""
    command = [sys.executable, "-m", "glm_jax.finetune", *args]
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "errors": "replace"}
    with subprocess.Popen(command, **pipe) as child:
        for line in child.stdout:
            print(f"[{name}] {line}", end="", flush=True)
    status = child.returncode if child.returncode >= 0 else 128 - child.returncode  # killed by a signal
    print(f"[{name}] exit status {status}", flush=True)
    return status


def _fine_tune(c, init: str, workdir: str, lr: float, seed: int, processes: int, finetune_args) -> int:
    """One run of the grid, which resumes its workdir: in a process of its own if `processes`; its exit status."""
    name = run_name(lr, seed)
    if processes:
        grid_args = [f"--workdir={workdir}", f"--config.optimizer.peak_lr={lr!r}", f"--config.train.seed={seed}"]
        return _subprocess([*finetune_args, *grid_args], name)
    print(f"== {name}: fine-tuning into {workdir}", flush=True)
    try:
        finetuning_job.run(run_config(c, lr, seed), init, workdir)
    except stops.Diverged as diverged:  # a learning rate too high: the grid goes on
        print(f"== {name}: {diverged}", flush=True)
        return diverged.exit_code
    return 0


def run(c, init: str, root: str, seeds: list[int], lrs: list[float], *, processes: int = 0,
        finetune_args: list[str] = ()) -> int:  # fmt: skip
    """Fine-tunes `c` from `init` for every (lr, seed) not yet recorded, in this process one after the
    other, or with `processes` > 0 as that many `python -m glm_jax.finetune FINETUNE_ARGS` at a time
    (FINETUNE_ARGS: `--config`, `--init` and overrides equal to `c`); prints and writes the summary.
    Returns the exit status: 0, or that of the first failed run (the others still ran)."""
    if c.finetune.epochs <= 0:
        raise ValueError("finetune.epochs must be > 0: a grid fine-tunes.")
    full = finetuning_job.config_from_init(c, init)
    finetuning_job.check(full)
    kind = finetuning_job.KINDS[full.finetune.kind](full, workdir_lib.model_vocabulary(full))
    root = workdir_lib.absolute(root)
    epath.Path(root).mkdir(parents=True, exist_ok=True)
    records = _Records(root, kind.task)
    todo = [(lr, seed) for lr in lrs for seed in seeds if (lr, seed) not in records.done]
    print(f"grid of {kind.task}: {len(lrs)} lrs × {len(seeds)} seeds, {len(lrs) * len(seeds) - len(todo)} recorded "
          f"in {root}/{GRID_FILE}, {len(todo)} to run", flush=True)  # fmt: skip

    def one(lr: float, seed: int) -> int:
        workdir = f"{root}/{run_name(lr, seed)}"
        status = _fine_tune(c, init, workdir, lr, seed, processes, finetune_args)
        if status == 0:
            records.add(lr, seed, workdir, kind.main_metric)
        return status

    if processes:
        with concurrent.futures.ThreadPoolExecutor(processes) as pool:
            futures = [pool.submit(one, lr, seed) for lr, seed in todo]
            try:
                statuses = [future.result() for future in futures]
            except KeyboardInterrupt:  # the runs in flight stop on the same Ctrl-C; start no others
                pool.shutdown(cancel_futures=True)
                raise
    else:
        statuses = [one(lr, seed) for lr, seed in todo]
    report(root, [r for r in read_records(root) if r["task"] == kind.task and r["lr"] in lrs and r["seed"] in seeds])
    failed = [(run_name(*todo[i]), s) for i, s in enumerate(statuses) if s]
    if failed:
        print(f"{len(failed)} runs failed: {', '.join(f'{n} (status {s})' for n, s in failed)}; rerun to resume them")
    return failed[0][1] if failed else 0


def report(root: str, records: list[dict]) -> None:
    """Prints the summary of `records` and writes it to `root/grid_summary.jsonl`."""
    summaries = summarize(records)
    for summary in summaries:
        print("\n" + markdown(summary) + "\n", flush=True)
    (epath.Path(root) / SUMMARY_FILE).write_text("".join(json.dumps(s) + "\n" for s in summaries))
