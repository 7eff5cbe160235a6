"""Pretrains GLM on a SeqIO task.

    python -m glm_jax.train --config configs/glm_tiny.py --workdir /tmp/glm_tiny [--config.train.steps=100]
    python -m glm_jax.train --config CONFIG --workdir NEW --init DIR [--config.model.max_len=1024]

Writes to the workdir: `config.json`, `checkpoints/` (Orbax), TensorBoard event files and
`metrics.jsonl`. Running the same command again resumes from the latest checkpoint and continues
the same data stream. `--init DIR` (a workdir of glm_jax.train or glm_jax.convert) starts from
DIR's parameters and model, its vocabulary and positions grown where the config needs more
(`glm_jax/continued.py`), with a fresh optimizer at step 0.
"""

import time

from absl import flags
from ml_collections import config_flags

from glm_jax import cli


def main(argv):
    cli.no_arguments(argv)
    start = time.perf_counter()
    from glm_jax import pretraining  # after the flags: --help needs no JAX or TensorFlow

    pretraining.run(cli.config_value(), flags.FLAGS.workdir, flags.FLAGS.init)
    cli.say(f"done in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/glm_tiny.py.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and metrics.")
    flags.DEFINE_string("init", None, "Workdir whose latest parameters start the run (continued pretraining).")
    flags.mark_flags_as_required(["config", "workdir"])
    cli.run(main, "glm_jax.train")
