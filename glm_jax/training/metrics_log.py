"""Metrics to TensorBoard (clu), to `metrics.jsonl` and to the console; process 0 only writes.

A resumed run first cuts both logs back to the step it resumes from, so that every step appears
once although the steps after the last checkpoint are trained again.
"""

import json
import math
import time

import jax
import tensorflow as tf
from clu import metric_writers
from etils import epath
from tensorboard.compat.proto import event_pb2


def _json_line(step: int, scalars: dict) -> str:
    """Strict JSON: a non-finite value is written as null."""
    values = {k: v if math.isfinite(v) else None for k, v in scalars.items()}
    return json.dumps({"step": step, **values}, allow_nan=False)


def _truncate_jsonl(path: epath.Path, step: int) -> None:
    """Keeps the lines of steps <= `step`; drops those after it and a torn last line."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= step:
            kept.append(line + "\n")
    partial = path.parent / (path.name + ".tmp")
    partial.write_text("".join(kept))
    partial.replace(path)


def _truncate_events(workdir: epath.Path, step: int) -> None:
    """Rewrites each TensorBoard event file without the summaries of steps after `step`; removes
    a file that is left without any summary."""
    for path in workdir.glob("events.out.tfevents.*"):
        kept, summaries = [], 0
        try:
            for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
                event = event_pb2.Event.FromString(record)
                if event.HasField("summary"):
                    if event.step > step:
                        continue
                    summaries += 1
                kept.append(record)
        except tf.errors.DataLossError:  # torn by a crash: the records before the tear are kept
            pass
        if not summaries:
            path.unlink()
            continue
        partial = str(path) + ".tmp"
        with tf.io.TFRecordWriter(partial) as writer:
            for record in kept:
                writer.write(record)
        tf.io.gfile.rename(partial, str(path), overwrite=True)


class MetricsLog:
    """Writes scalars; train lines get steps/s, tokens/s, TFLOP/s per device and MFU (see flops.py)."""

    def __init__(self, workdir: str, total_steps: int, peak_flops_per_device: float, start_step: int | None = None):
        """`start_step`: the step training (re)starts from; logged steps after it are removed first."""
        self.enabled = jax.process_index() == 0
        self.total_steps = total_steps
        self.peak = peak_flops_per_device
        if self.enabled and start_step is not None:
            _truncate_jsonl(epath.Path(workdir) / "metrics.jsonl", start_step)
            _truncate_events(epath.Path(workdir), start_step)
        self._writer = metric_writers.create_default_writer(workdir, just_logging=not self.enabled, asynchronous=False)
        self._jsonl = epath.Path(workdir) / "metrics.jsonl"
        self._last = None  # (time, step) of the previous train log line

    def write(self, step: int, scalars: dict) -> None:
        """One JSON line and one TensorBoard event per key."""
        scalars = {k: float(v) for k, v in scalars.items()}
        self._writer.write_scalars(step, scalars)
        if self.enabled:
            with self._jsonl.open("a") as f:
                f.write(_json_line(step, scalars) + "\n")

    def train(self, step: int, scalars: dict, tokens_per_step: int, model_flops: float) -> None:
        """Adds throughput since the previous call and prints a console line with the ETA.

        `model_flops`: model FLOPs of the logged step, taken as typical of the steps since the last line.
        """
        now = time.perf_counter()
        if self._last is not None and step > self._last[1]:
            steps_per_s = (step - self._last[1]) / (now - self._last[0])
            per_device = model_flops * steps_per_s / jax.device_count()
            scalars = {
                **scalars,
                "steps_per_s": steps_per_s,
                "tokens_per_s": steps_per_s * tokens_per_step,
                "tflops_per_device": per_device / 1e12,
                "mfu": per_device / self.peak,
            }
        self._last = (now, step)
        self.write(step, scalars)
        if self.enabled:
            line = f"step {step}/{self.total_steps} | loss {scalars['loss']:.4f} | lr {scalars['learning_rate']:.2e}"
            if "steps_per_s" in scalars:
                eta = (self.total_steps - step) / scalars["steps_per_s"]
                line += (
                    f" | {scalars['steps_per_s']:.2f} steps/s | {scalars['tokens_per_s']:,.0f} tokens/s"
                    f" | {scalars['tflops_per_device']:.3f} TFLOP/s/device | MFU {scalars['mfu']:.1%}"
                    f" | ETA {int(eta // 60)}m{int(eta % 60):02d}s"
                )
            print(line, flush=True)

    def restart_clock(self) -> None:
        """Excludes a pause (evaluation, checkpointing) from the next throughput figure."""
        self._last = None

    def close(self) -> None:
        self._writer.close()
