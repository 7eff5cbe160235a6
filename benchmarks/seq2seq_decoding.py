"""Decoding speed of a seq2seq fine-tuned workdir's validation pass, at several beam counts.

    python -m benchmarks.seq2seq_decoding --workdir workdir/summary [--beams 1,5]

For each beam count: the whole validation split decoded as `glm_jax.finetune` evaluates it
(batches of data.batch_size, one compiled program, compiled on a first batch before timing),
then examples/s and the ROUGE / BLEU scores of the pass, measured in the same run.
"""

import argparse
import time

from glm_jax import workdir as workdir_lib
from glm_jax.downstream import finetuning_job
from glm_jax.downstream.seq2seq import kind as seq2seq_kind
from glm_jax.training import checkpoints, sharding


def measure(task, params, data, beams: int) -> tuple[float, dict]:
    """(examples/s, scores) of one validation pass with `beams` beams, compiled before timing."""
    task.set_decoding(beams)
    task.generate(params, data[0][0])  # compile
    start = time.perf_counter()
    scores, records = task.evaluate(params, data)
    return len(records) / (time.perf_counter() - start), scores


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="a workdir of glm_jax.finetune with finetune.kind=seq2seq")
    parser.add_argument("--beams", default="1,5", help="comma-separated beam counts")
    args = parser.parse_args()
    workdir = workdir_lib.absolute(args.workdir)
    c = finetuning_job.config_from_init(workdir_lib.read_config(workdir), workdir)
    if c.finetune.kind != "seq2seq":
        raise SystemExit(f"{workdir} is not a seq2seq fine-tuning workdir (finetune.kind={c.finetune.kind}).")
    most = c.finetune.answer_len - 1
    print(f"{workdir}: {c.data.eval_split} split, batches of {c.data.batch_size}, at most {most} new tokens")
    print(f"{'beams':>5} {'examples/s':>11}  scores")
    task = seq2seq_kind.Seq2SeqKind(c, workdir_lib.model_vocabulary(c))
    trainer = task.build(sharding.make_mesh())
    params, _ = checkpoints.restore_params(f"{workdir}/checkpoints", trainer.abstract_state.params)
    data = task.eval_data()
    for beams in (int(b) for b in args.beams.split(",")):
        speed, scores = measure(task, params, data, beams)
        shown = " | ".join(f"{k} {v:.2f}" for k, v in scores.items() if k != "examples_per_s")
        print(f"{beams:>5} {speed:>11.1f}  {shown}")


if __name__ == "__main__":
    main()
