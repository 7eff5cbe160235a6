"""The paper's comparisons at small scale, in one command: GLM, its ablations (− shuffle, + sentinel
tokens, − block positions), GLM-Doc, BERT and GPT pretrained on the embedded default corpus at equal
parameters, tokens and steps over several seeds, then each evaluated on the cloze demo (as a cloze,
and for GLM and BERT also as a classifier), the summary demo, the infilling demo at 10% and 50% and
zero-shot perplexity (see glm_jax/comparisons/plan.py).

    python -m glm_jax.reproduce --workdir workdir/comparisons [--seeds 0,1,2] [--variants glm,bert,gpt] [--quick]

Each job (a variant's pretraining for a seed, or one evaluation) runs in this process into
`WORKDIR/<variant>/seed<s>/<job>` and, once finished, adds a line to `WORKDIR/results.jsonl`; a rerun
skips recorded jobs and resumes the others. At the end (or with `--report_only`) the table of means
± std over seeds and the paper's claims checked against it are printed and written to
`WORKDIR/comparisons.md`, the figure to `WORKDIR/comparisons.png`. `--quick` runs a few steps of a
tiny model per job: the whole path, for tests.
"""

import time

from absl import flags

from glm_jax import cli


def main(argv):
    cli.no_arguments(argv)
    start = time.perf_counter()
    from glm_jax.comparisons import plan, runner
    from glm_jax.downstream import grid

    f = flags.FLAGS
    variants = [plan.variant(name.strip()) for name in f.variants] if f.variants else list(plan.VARIANTS)
    seeds = grid.parse_seeds(f.seeds)
    scale = plan.QUICK if f.quick else plan.FULL
    status = runner.run(f.workdir, variants, seeds, scale, report_only=f.report_only)
    print(f"done in {time.perf_counter() - start:.0f}s", flush=True)
    return status


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Directory of the comparisons: a workdir per job, results, table, figure.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Comma-separated pretraining seeds (each fine-tuning uses its own).")
    flags.DEFINE_list("variants", None, "Comma-separated variants (configs/comparisons); default: the seven of "
                      "glm_jax/comparisons/plan.py VARIANTS (random_position only when named).")  # fmt: skip
    flags.DEFINE_bool("quick", False, "A few steps of a tiny model per job (the path only, for tests).")
    flags.DEFINE_bool("report_only", False, "Only write the table and figure of the recorded results.")
    flags.mark_flags_as_required(["workdir"])
    cli.run(main, "glm_jax.reproduce")
