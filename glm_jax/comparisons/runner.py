"""Runs the reproduction's jobs in order (seed by seed, so that an interrupted run has whole seeds),
records each finished one in `results.jsonl`, skips those already recorded, and reports."""

import json
import time
import traceback

import jax
from etils import epath

from glm_jax import workdir as workdir_lib
from glm_jax.comparisons import jobs, plan, report
from glm_jax.training.stops import Preempted, StoppedStarting


def describe(scale: plan.Scale, seeds: list[int]) -> str:
    model = ", ".join(f"model.{k}={v}" for k, v in scale.model) or "configs/glm_tiny.py's model"
    tuning = (
        f"{scale.finetune_steps} steps"
        if scale.finetune_steps
        else (f"cloze {scale.cloze_epochs}, summary {scale.summary_epochs}, infilling {scale.infill_epochs} epoch(s)")
    )
    return (f"Pretraining {scale.pretrain_steps} steps of 16 × 128 ({model}), seeds {seeds}; fine-tuning {tuning}; "
            f"perplexity over {scale.perplexity_documents or 'all'} validation documents.")  # fmt: skip


def run(root: str, variants: list[plan.Variant], seeds: list[int], scale: plan.Scale, *, report_only=False) -> int:
    """Runs every job not yet recorded; writes and prints the report. Returns 0, or 1 if a job failed
    (the others still ran; a rerun retries it)."""
    root = workdir_lib.absolute(root)
    epath.Path(root).mkdir(parents=True, exist_ok=True)
    # The seeds of a variant compile the same programs: later ones read them from a cache on disk.
    jax.config.update("jax_compilation_cache_dir", str(epath.Path(root) / "compilation_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    done = {(r["variant"], r["seed"], r["job"]) for r in report.read(root)}
    failed = []
    for seed in [] if report_only else seeds:
        for v in variants:
            for job in ("pretrain", *v.evaluations):
                if (v.name, seed, job) in done:
                    continue
                if job != "pretrain" and (v.name, seed, "pretrain") not in done:
                    continue  # its pretraining failed
                print(f"== {v.name} seed {seed}: {job}", flush=True)
                start = time.perf_counter()
                try:
                    scores = jobs.run(root, v, seed, scale, job)
                except (Preempted, StoppedStarting):  # a signal stops the whole run; a rerun resumes this job
                    raise
                except Exception:  # one failed job does not stop the others; its rerun retries it
                    traceback.print_exc()
                    failed.append(f"{v.name} seed {seed} {job}")
                    continue
                record = {"variant": v.name, "seed": seed, "job": job, "scores": scores,
                          "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
                with (epath.Path(root) / report.RESULTS).open("a") as f:
                    f.write(json.dumps(record) + "\n")
                done.add((v.name, seed, job))
    print("\n" + report.write(root, variants, describe(scale, seeds)) + "\n", flush=True)
    if failed:
        print(f"{len(failed)} jobs failed: {'; '.join(failed)}; rerun to retry them", flush=True)
    return 1 if failed else 0
