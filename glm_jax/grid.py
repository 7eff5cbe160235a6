"""Fine-tunes one config over seeds × learning rates and reports, per task, the mean ± std over seeds
for each learning rate, the best learning rate and the best single run (as the official
`scripts/finetune_superglue_grid.sh` and `process_grid.py`).

    python -m glm_jax.grid --config configs/finetune/rte.py --init workdir/glm_large --workdir workdir/rte_grid \\
        --seeds 1,2,3 --lrs 5e-6,1e-5,2e-5 [--processes 2] [--config.finetune.epochs=5]

Each run fine-tunes into `WORKDIR/lr{lr}_seed{seed}` with `optimizer.peak_lr` and `train.seed` set,
the other `--config.*` overrides passed to every run; one after the other in this process, or with
`--processes N` as N `python -m glm_jax.finetune` processes at a time. Each finished run adds a line
to `WORKDIR/grid.jsonl` (task, metric, lr, seed, workdir, step and scores of its best evaluation);
the summary is printed as Markdown tables and written to `WORKDIR/grid_summary.jsonl`. Running the
same command again skips the recorded runs and resumes the others (see glm_jax/downstream/grid.py).
"""

import time

from absl import flags
from ml_collections import config_flags

from glm_jax import cli

# JAX, TensorFlow and the package's training modules load in `main`, so that --help needs none.


def main(argv):
    cli.no_arguments(argv)
    start = time.perf_counter()
    from glm_jax.downstream import grid

    f = flags.FLAGS
    seeds, lrs = grid.parse_seeds(f.seeds), grid.parse_lrs(f.lrs)
    overrides = list(f["config"].override_values)
    grid.check_overrides(overrides)
    c = cli.config_value()
    finetune_args = [f"--config={f['config'].config_filename}", f"--init={f.init}"]
    finetune_args += [f[f"config.{key}"].serialize() for key in overrides]
    status = grid.run(c, f.init, f.workdir, seeds, lrs, processes=f.processes, finetune_args=finetune_args)
    print(f"done in {time.perf_counter() - start:.0f}s", flush=True)
    return status


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/finetune/rte.py.", lock_config=True)
    flags.DEFINE_string("init", None, "Workdir whose latest parameters start every run.")
    flags.DEFINE_string("workdir", None, "Directory of the grid: a workdir per run, grid.jsonl, grid_summary.jsonl.")
    flags.DEFINE_list("seeds", None, "Comma-separated seeds (train.seed), e.g. 1,2,3.")
    flags.DEFINE_list("lrs", None, "Comma-separated peak learning rates (optimizer.peak_lr), e.g. 5e-6,1e-5,2e-5.")
    flags.DEFINE_integer("processes", 0, "Runs at a time in processes of their own; 0: all in this one.", lower_bound=0)
    flags.mark_flags_as_required(["config", "init", "workdir", "seeds", "lrs"])
    cli.run(main, "glm_jax.grid")
