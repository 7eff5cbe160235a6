"""The small-scale reproduction (`python -m glm_jax.reproduce`): its table, claims and figure from
recorded results, and the whole path in `--quick` mode through the command, resumed."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from glm_jax.comparisons import jobs, plan, report, runner
from glm_jax.training.stops import Preempted


def _record(variant, seed, job, **scores):
    return {"variant": variant, "seed": seed, "job": job, "scores": scores, "seconds": 1.0}


RECORDS = [
    *(_record("glm", s, "pretrain", parameters=100) for s in (0, 1, 2)),
    *(_record("glm", s, "cloze", accuracy=a) for s, a in ((0, 0.70), (1, 0.72), (2, 0.74))),
    *(_record("bert", s, "cloze", accuracy=a) for s, a in ((0, 0.60), (1, 0.61), (2, 0.62))),
    *(_record("glm", s, "classify", accuracy=a) for s, a in ((0, 0.60), (1, 0.80), (2, 0.70))),
    _record("bert", 0, "classify", accuracy=0.5),
    *(_record("glm", s, "perplexity", ppl_unidirectional=p, ppl_bidirectional=p - 50) for s, p in ((0, 300), (1, 310))),
]


def test_table_cells_are_mean_and_sample_std_over_the_seeds():
    text = report.table(RECORDS, [plan.variant("glm"), plan.variant("bert"), plan.variant("gpt")])
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    rows = {row[0]: row[1:] for row in cells}
    assert rows["GLM"][:3] == ["100", "0,1,2", "72.00 ± 2.00"]  # stdev(70, 72, 74) = 2
    assert rows["GLM"][3] == "70.00 ± 10.00"
    assert rows["GLM"][7:] == ["305.0 ± 7.1", "255.0 ± 7.1"]
    assert rows["BERT"][2:4] == ["61.00 ± 1.00", "50.00 ± 0.00 (1 seed)"]
    assert rows["GPT"] == ["—"] * 9


@pytest.mark.parametrize(
    "better, worse, lower, expected",
    [
        ([0.70, 0.72, 0.74], [0.60, 0.61, 0.62], False, "holds"),  # 11 points, standard error 1.3
        ([0.60, 0.61, 0.62], [0.70, 0.72, 0.74], False, "does not hold"),
        ([0.70, 0.72, 0.74], [0.60, 0.80, 0.70], False, "within noise"),  # 2 points, standard error 5.9
        ([250, 260], [300, 310], True, "holds"),  # lower is better
        ([0.7], [0.6, 0.6], False, "one seed"),
        ([], [0.6], False, "not run"),
    ],
)
def test_a_claim_holds_only_beyond_twice_the_standard_error(better, worse, lower, expected):
    assert report.verdict(better, worse, lower) == expected


def test_claims_name_both_sides():
    lines = report.claims(RECORDS).splitlines()
    glm_bert = next(line for line in lines if line.startswith("| GLM beats BERT on cloze NLU"))
    assert "glm accuracy: 72.00 ± 2.00 | bert accuracy: 61.00 ± 1.00 | holds |" in glm_bert
    shuffle = next(line for line in lines if "shuffling" in line)
    assert shuffle.endswith("no_shuffle accuracy: — | not run |")


def _fake_jobs(monkeypatch, fail):
    """jobs.run replaced: a score per job, `fail` (variant, job) -> exception raised instead."""
    ran = []

    def run(root, v, seed, scale, job):
        ran.append((v.name, job))
        if (v.name, job) in fail:
            raise fail[v.name, job]
        return {"parameters": 1} if job == "pretrain" else {"accuracy": 0.5}

    monkeypatch.setattr(jobs, "run", run)
    return ran


def test_a_failed_job_skips_its_variants_evaluations_and_the_run_goes_on(tmp_path, monkeypatch):
    ran = _fake_jobs(monkeypatch, {("glm", "pretrain"): ValueError("broken")})
    variants = [plan.variant("glm"), plan.variant("gpt")]
    assert runner.run(str(tmp_path), variants, [0], plan.QUICK) == 1
    assert ran == [("glm", "pretrain"), ("gpt", "pretrain"), ("gpt", "perplexity"), ("gpt", "cloze"),
                   ("gpt", "summary")]  # fmt: skip
    assert [(r["variant"], r["job"]) for r in report.read(str(tmp_path))] == ran[1:]


def test_a_signal_stops_the_whole_run_and_a_rerun_resumes_at_that_job(tmp_path, monkeypatch):
    """A preempted job (SIGTERM: its checkpoint committed) is not a failed one: nothing after it runs."""
    variants = [plan.variant("gpt")]
    ran = _fake_jobs(monkeypatch, {("gpt", "cloze"): Preempted(3, "SIGTERM")})
    with pytest.raises(Preempted):
        runner.run(str(tmp_path), variants, [0], plan.QUICK)
    assert ran == [("gpt", "pretrain"), ("gpt", "perplexity"), ("gpt", "cloze")]
    ran = _fake_jobs(monkeypatch, {})
    assert runner.run(str(tmp_path), variants, [0], plan.QUICK) == 0
    assert ran == [("gpt", "cloze"), ("gpt", "summary")]


def test_quick_mode_runs_every_job_and_a_rerun_resumes_nothing(tmp_path):
    """GLM (every evaluation, the classifier too) and GPT (left-to-right scoring, continuation,
    unidirectional perplexity), one seed, a few steps of a tiny model each."""
    command = [sys.executable, "-m", "glm_jax.reproduce", f"--workdir={tmp_path}", "--quick", "--seeds=0",
               "--variants=glm,gpt"]  # fmt: skip
    env = {**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = report.read(str(tmp_path))
    jobs = [(r["variant"], r["job"]) for r in records]
    assert jobs == [("glm", j) for j in ("pretrain", *plan.variant("glm").evaluations)] + [
        ("gpt", j) for j in ("pretrain", "perplexity", "cloze", "summary")
    ]
    scores = {(r["variant"], r["job"]): r["scores"] for r in records}
    assert set(scores["glm", "perplexity"]) == {"ppl_unidirectional", "ppl_bidirectional"}
    assert set(scores["gpt", "perplexity"]) == {"ppl_unidirectional"}
    assert 0 <= scores["gpt", "cloze"]["accuracy"] <= 1 and "bleu4" in scores["glm", "infill_0.5"]
    assert scores["glm", "pretrain"]["parameters"] > scores["gpt", "pretrain"]["parameters"]  # + block table
    table = (tmp_path / "comparisons.md").read_text()
    assert "| GPT | " in table and "The paper's claims at this scale:" in table
    assert (tmp_path / "comparisons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A rerun skips every recorded job and writes the same report.
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "== " not in again.stdout, again.stdout[-3000:]
    assert report.read(str(tmp_path)) == records and (tmp_path / "comparisons.md").read_text() == table
    json.dumps(records)  # the records are plain JSON
