"""Fine-tunes a pretrained or converted GLM on a downstream task: a cloze task (`finetune.kind=cloze`,
NLU: answers scored in a blank) or a sequence-to-sequence one (`seq2seq`: summaries, questions).

    python -m glm_jax.finetune --config configs/finetune/demo_choice.py --init workdir/glm_tiny \\
        --workdir workdir/choice [--config.finetune.epochs=5] [--eval_only]

`--init` is a workdir of glm_jax.train or glm_jax.convert: the model's shape and vocabulary come
from its config.json and only its parameters are restored. Writes to `--workdir`: config.json,
`checkpoints/` (train state, data position and input iterator, for exact resume), `best/` (the
parameters of the best evaluations by the task's main metric), TensorBoard events, `metrics.jsonl`
and `predictions_<split>.jsonl` of the last evaluation (see `glm_jax/downstream/finetuning_job.py`). Running
the same command again resumes. `--eval_only` scores the workdir's best checkpoint on
`data.eval_split` and writes its predictions; `--config.finetune.epochs=0` scores the `--init`
parameters the same way, without training (zero-shot).
"""

import time

from absl import app, flags
from ml_collections import config_flags

from glm_jax import cli

# JAX, TensorFlow and the package's training modules load in `main`, so that --help needs none.


def main(argv):
    cli.no_arguments(argv)
    start = time.perf_counter()
    if not flags.FLAGS.eval_only and not flags.FLAGS.init:
        raise app.UsageError("--init DIR (a pretraining or converted workdir) is required unless --eval_only.")
    if not flags.FLAGS.eval_only and flags.FLAGS["config"].value is None:
        raise app.UsageError("--config FILE (e.g. configs/finetune/rte.py) is required unless --eval_only.")
    import tensorflow as tf

    from glm_jax.downstream import finetuning_job

    try:
        finetuning_job.run(cli.config_value(), flags.FLAGS.init, flags.FLAGS.workdir, flags.FLAGS.eval_only)
    except tf.errors.InvalidArgumentError as error:  # a data check inside the pipeline (e.g. too many answers)
        raise ValueError(f"bad data: {error.message.split(chr(10))[0]}") from error
    cli.say(f"done in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/finetune/rte.py.", lock_config=True)
    flags.DEFINE_string("init", None, "Workdir whose latest parameters start the fine-tuning.")
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, predictions, summaries and metrics.")
    flags.DEFINE_bool("eval_only", False, "Score the workdir's best checkpoint on data.eval_split.")
    flags.mark_flags_as_required(["workdir"])
    cli.run(main, "glm_jax.finetune")
