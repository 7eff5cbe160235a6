"""Compile-only: lowers and compiles the train step for a config and mesh, without training.

    python -m glm_jax.compile --config configs/glm_large.py [--topology v5p:2x2x1] [--config.a.b=v]
        [--compare_attention] [--hbm_gib 95] [--hlo_dir DIR]

Prints the per-device memory of parameters, optimizer state and the compiler's temporaries (from
the compiled memory analysis), the peak, whether it fits the device's memory (HBM of a known TPU,
or `--hbm_gib`), the model FLOPs of one step, and the buffers of the compiled step that are
quadratic in the row length: `[.., L, L]` (attention scores, a dense mask) and `[.., L, V]`
(logits at every position). With `--compare_attention` it compiles the step twice,
model.attention=xla and =splash, and prints the two side by side.

With `--topology` it compiles for TPU devices described by `jax.experimental.topologies` (needs
`libtpu`, no TPU): this is how a CPU-only machine checks that a model fits a pod slice before
launch. The model is then built for TPU (model.attention=auto resolves to splash where it would on
a TPU, and the splash kernel is lowered by Mosaic, not interpreted). Without it, it compiles for
the local devices (e.g. 8 fake CPU devices with XLA_FLAGS=--xla_force_host_platform_device_count=8).
"""

import os
import pathlib

from absl import flags
from ml_collections import config_flags

from glm_jax import cli, console

# JAX and the package's training modules load in the functions, so that --help needs none of them.


def topology_devices(name: str) -> list:
    """Devices of a TPU topology such as 'v5p:2x2x1', from libtpu, with no TPU attached."""
    from jax.experimental import topologies

    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    # No TPU is driven here, so several compiles (or a test beside a command) may load libtpu at
    # once; without this, libtpu's process lock (/tmp/libtpu_lockfile) refuses all but the first.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        return list(topologies.get_topology_desc(topology_name=name, platform="tpu").devices)
    except Exception as error:  # libtpu missing, or an unknown topology name
        raise ValueError(
            f"Cannot describe TPU topology {name!r} ({error}). Install the libtpu that matches JAX "
            "(pip install 'libtpu==0.0.42.*' for jax 0.10.2) and use a name like v5p:2x2x1 or v4:2x2x2."
        ) from error


def task_max_scored(c) -> int:
    """The most scored positions a row of `c`'s task holds, from the data side (TensorFlow, SeqIO);
    where that is not installed (an accelerator image with JAX alone), data.seq_len, said on the
    console: logits at every position unless train.scored_capacity sets a capacity."""
    try:
        from glm_jax import workdir
    except ImportError as error:
        console.say(f"no data side ({error}): logits at every position unless train.scored_capacity is set")
        return c.data.seq_len
    return workdir.pretraining_max_scored(c)


def with_attention(c, attention: str):
    """A copy of config `c` with model.attention set; splash also sets model.attention_dropout to 0
    (the kernel has none)."""
    c = c.copy_and_resolve_references()
    c.model.attention = attention
    if attention == "splash":
        c.model.attention_dropout = 0.0
    return c


def main(argv):
    cli.no_arguments(argv)
    import jax

    f = flags.FLAGS
    devices = topology_devices(f.topology) if f.topology else jax.devices()
    c = cli.config_value()
    configs = [with_attention(c, a) for a in ("xla", "splash")] if f.compare_attention else [c]
    from glm_jax import compile_report as report

    bound = task_max_scored(c)
    reports = [report.compile_report(x, devices, keep_hlo=bool(f.hlo_dir), max_scored=bound) for x in configs]
    if f.hlo_dir:
        folder = pathlib.Path(f.hlo_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for r in reports:
            (folder / f"train_step_{r['attention']}.hlo.txt").write_text(r.pop("hlo"))
    hbm = report.hbm_bytes(devices[0].device_kind, f.hbm_gib)
    text = report.format_comparison(reports, hbm) if len(reports) > 1 else report.format_report(reports[0], hbm)
    print(text, flush=True)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/glm_large.py.", lock_config=True)
    flags.DEFINE_string("topology", "", "TPU topology to compile for, e.g. v5p:2x2x1; empty: the local devices.")
    flags.DEFINE_bool(
        "compare_attention",
        False,
        "Compile with model.attention=xla and =splash (attention dropout 0) and print both side by side.",
    )
    flags.DEFINE_float("hbm_gib", 0.0, "Memory per device (GiB) to check the peak against; 0: the known TPU's HBM.")
    flags.DEFINE_string("hlo_dir", "", "Write each compiled step's HLO text here (train_step_<attention>.hlo.txt).")
    flags.mark_flags_as_required(["config"])
    cli.run(main, "glm_jax.compile")
