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

import dataclasses
import math
import os
import pathlib
import re

from absl import flags
from ml_collections import config_flags

from glm_jax import cli, console

# JAX and the package's training modules load in the functions, so that --help needs none of them.

_VOCAB = 8000  # the shipped vocabulary; set model.vocab_size for another (e.g. 30592 BERT, 50304 GPT-2)
_GIB = 1 << 30

# HBM per chip (GiB) by JAX's device_kind, for "does it fit"; --hbm_gib for any other device.
HBM_GIB = {
    "TPU v4": 32,
    "TPU v5": 95,  # v5p
    "TPU v5p": 95,
    "TPU v5 lite": 16,  # v5e
    "TPU v5e": 16,
    "TPU v6 lite": 32,  # v6e
    "TPU v6e": 32,
}

# An array type in HLO text, e.g. `f32[4,16,8192,8192]{3,2,1,0}` or `pred[8192,8192]`.
_HLO_SHAPE = re.compile(r"\b([a-z][a-z0-9]*)\[(\d+(?:,\d+)*)\]")


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


def _bytes_per_device(abstract_tree) -> int:
    """Bytes that one device holds of a tree of sharded abstract arrays."""
    import jax
    import numpy as np

    leaves = jax.tree.leaves(abstract_tree)
    return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in leaves)


@dataclasses.dataclass(frozen=True)
class QuadraticBuffers:
    """Array types of an HLO module that grow with L² or L x V (each type once, largest first)."""

    length_by_length: tuple[str, ...]  # two axes of L
    length_by_vocab: tuple[str, ...]  # an axis of L (or a multiple) and one of the vocabulary (or a shard of it)


def quadratic_buffers(
    hlo_text: str, seq_len: int, vocab_rows: int, vocab_shards: int = 1, model_sizes=()
) -> QuadraticBuffers:
    """The array types in `hlo_text` (a compiled or lowered module's text) quadratic in the row length.

    `[.., L, L]`: two axes of exactly `seq_len` (scores `[B, heads, L, L]`, a mask `[B, 1, L, L]`).
    `[.., L, V]`: an axis of `vocab_rows` or `vocab_rows / vocab_shards` (logits split over a tensor
    axis) and one of `seq_len`, or of a multiple of it that is none of `model_sizes` (e.g. hidden,
    4 x hidden): `[B, L, V]`, or `[B * L, V]` flattened, but not a `[V, hidden]` embedding. Shapes
    alone decide, so L must differ from the model's other sizes and from 128
    (the splash kernel broadcasts segment ids and its logsumexp over 128 lanes). Every array
    type in the text is read, those inside fusions too: a quadratic array that a fusion never
    writes out still shows the program computes one.
    """
    vocab = {vocab_rows, vocab_rows // max(vocab_shards, 1)}
    not_length = vocab | set(model_sizes)
    is_length = lambda d: d == seq_len or (d > 0 and d % seq_len == 0 and d not in not_length)  # noqa: E731
    by_length, by_vocab = {}, {}
    for dtype, dims_text in _HLO_SHAPE.findall(hlo_text):
        dims = [int(d) for d in dims_text.split(",")]
        name, size = f"{dtype}[{dims_text}]", math.prod(dims)
        if dims.count(seq_len) >= 2:
            by_length[name] = size
        elif any(d in vocab for d in dims) and any(is_length(d) for d in dims):
            by_vocab[name] = size
    largest_first = lambda found: tuple(sorted(found, key=lambda n: (-found[n], n)))  # noqa: E731
    return QuadraticBuffers(largest_first(by_length), largest_first(by_vocab))


def hbm_bytes(device_kind: str, hbm_gib: float = 0.0) -> int:
    """Memory per device to check the peak against: `hbm_gib` if > 0, else the known chip's HBM, else 0 (unknown)."""
    gib = hbm_gib if hbm_gib > 0 else HBM_GIB.get(device_kind, 0)
    return int(gib * _GIB)


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


def lower_train_step(c, devices):
    """(lowered train step, its `Trainer`) of config `c` over `devices`, for abstract arguments.

    The model is built for the devices' platform (`devices[0].platform`), which for a TPU topology
    described on a CPU host is "tpu": model.attention=auto resolves as on a TPU and the splash
    kernel lowers with Mosaic (not Pallas interpret mode).
    """
    import jax
    import numpy as np

    from glm_jax import config as config_lib
    from glm_jax.config import model_config
    from glm_jax.contract import CONTRACT_FIELDS
    from glm_jax.training import sharding
    from glm_jax.training.synthetic import TOKENS
    from glm_jax.training.trainer import Trainer

    config_lib.validate(c, len(devices))
    glm_config = model_config(c, _VOCAB, TOKENS, platform=devices[0].platform)
    mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor, devices=devices)
    trainer = Trainer(c, glm_config, mesh, max_scored=task_max_scored(c))
    shape = (c.data.batch_size, c.data.seq_len)
    batch = {k: jax.ShapeDtypeStruct(shape, np.int32, sharding=trainer.batch_sharding) for k in CONTRACT_FIELDS}
    return trainer.lower_train_step(trainer.abstract_state, batch), trainer


# The TPU compiler's refusal of a program that cannot fit, e.g. "RESOURCE_EXHAUSTED: Ran out of memory
# on HBM, the total memory required for HLO temporaries (400.03G) exceeds available HBM (95.74G)."
_OUT_OF_MEMORY = re.compile(r"RESOURCE_EXHAUSTED: Ran out of memory[^(]*\(([\d.]+)G\)[^(]*\(([\d.]+)G\)")


def compile_report(c, devices, *, keep_hlo: bool = False) -> dict:
    """Compiles the train step of config `c` over `devices` (see `lower_train_step`); returns memory
    and FLOP figures and the quadratic buffers of the compiled module (`keep_hlo`: its text, "hlo").

    A step the TPU compiler refuses for want of HBM is reported, not raised: "out_of_memory" holds
    the compiler's message, the temporaries its figure, the buffers are the lowered module's
    (global shapes, before partitioning) and "device_memory_bytes" the HBM it names.
    """
    import jax

    from glm_jax.contract import CONTRACT_FIELDS
    from glm_jax.training import flops
    from glm_jax.training.synthetic import synthetic_pairs

    lowered, trainer = lower_train_step(c, devices)
    glm_config, mesh = trainer.glm_config, trainer.mesh
    rows = c.data.batch_size // (mesh.shape["data"] * mesh.shape["fsdp"])  # per device
    arguments = _bytes_per_device(trainer.abstract_state) + len(CONTRACT_FIELDS) * rows * c.data.seq_len * 4
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as error:
        refused = _OUT_OF_MEMORY.search(str(error))
        if refused is None:
            raise
        hlo, memory = lowered.as_text(dialect="hlo"), None
        temporaries, available = (int(float(x) * _GIB) for x in refused.groups())
        out_of_memory = refused.group(0)
    else:
        hlo, memory = compiled.as_text(), compiled.memory_analysis()
        out_of_memory, available = "", 0
    shape = (c.data.batch_size, c.data.seq_len)
    model_flops = flops.train_flops(
        glm_config, shape[0] * shape[1], synthetic_pairs(*shape), trainer.logit_tokens(*shape)
    )
    model_sizes = (glm_config.hidden, 3 * glm_config.hidden, glm_config.mlp_ratio * glm_config.hidden)
    quadratic = quadratic_buffers(hlo, c.data.seq_len, glm_config.vocab_size, c.mesh.tensor, model_sizes)
    report = {
        "device": devices[0].device_kind,
        "devices": len(devices),
        "mesh": dict(mesh.shape),
        "batch": shape,
        "attention": glm_config.attention,
        "attention_dropout": glm_config.attention_dropout,
        "splash_interpret": glm_config.splash_interpret,
        "vocab_rows": glm_config.vocab_size,
        "parameters": trainer.num_params(),
        "params_bytes": _bytes_per_device(trainer.abstract_state.params),
        "opt_state_bytes": _bytes_per_device(trainer.abstract_state.opt_state),
        "out_of_memory": out_of_memory,
        "device_memory_bytes": available,
        "length_by_length": quadratic.length_by_length,
        "length_by_vocab": quadratic.length_by_vocab,
        "model_flops": model_flops,
    }
    if memory is None:  # the state is donated: its outputs take the arguments' place
        report.update(temp_bytes=temporaries, argument_bytes=arguments, output_bytes=arguments)
        report.update(alias_bytes=arguments, total_bytes=arguments + temporaries, peak_bytes=0)
    else:
        report.update(
            temp_bytes=memory.temp_size_in_bytes,
            argument_bytes=memory.argument_size_in_bytes,
            output_bytes=memory.output_size_in_bytes,
            alias_bytes=memory.alias_size_in_bytes,
            # Arguments + outputs - donated (aliased) + temporaries: an upper bound; the compiler's
            # peak (its buffer assignment's, where it gives one: TPU) counts only buffers live at once.
            total_bytes=memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            - memory.alias_size_in_bytes
            + memory.temp_size_in_bytes,
            peak_bytes=getattr(memory, "peak_memory_in_bytes", 0) or 0,
        )
    if keep_hlo:
        report["hlo"] = hlo
    return report


def _fit_bytes(r: dict) -> int:
    """What must fit on a device: the compiler's peak where it gives one, else the total."""
    return r["peak_bytes"] or r["total_bytes"]


def _shapes(r: dict, key: str, most: int = 3) -> str:
    """The largest of the report's buffers under `key`; those of the lowered module (global shapes)
    where the compiler refused the step."""
    found = r[key]
    where = "lowered: " if r["out_of_memory"] else ""
    if not found:
        return where + "none"
    more = f" (+{len(found) - most} more)" if len(found) > most else ""
    return where + " ".join(found[:most]) + more


def _peak(r: dict, unit: str = "") -> str:
    return f"{r['peak_bytes'] / _GIB:.3f}{unit}" if r["peak_bytes"] else "not given by the compiler"


def _fits(r: dict, hbm: int) -> str:
    if r["out_of_memory"]:
        return f"NO: the compiler ran out of HBM ({r['device_memory_bytes'] / _GIB:.2f} GiB)"
    if not hbm:
        return "unknown (pass --hbm_gib)"
    verdict = "yes" if _fit_bytes(r) <= hbm else "NO"
    return f"{verdict} ({_fit_bytes(r) / hbm:.0%} of {hbm / _GIB:g} GiB)"


def _path(r: dict) -> str:
    mode = ", interpret mode" if r["attention"] == "splash" and r["splash_interpret"] else ""
    return f"{r['attention']} (attention_dropout {r['attention_dropout']:g}{mode})"


def _setup(r: dict) -> str:
    return (
        f"{r['devices']} x {r['device']}, mesh {r['mesh']}, {r['parameters']:,} parameters, "
        f"batch {r['batch'][0]} x {r['batch'][1]}"
    )


def _flops(r: dict) -> str:
    return f"model FLOPs per step {r['model_flops']:.4g} ({r['model_flops'] / r['devices']:.4g} per device)"


def format_report(r: dict, hbm: int = 0) -> str:
    """One compiled step's figures; `hbm`: bytes per device to check the peak against (0: unknown)."""
    return "\n".join(
        [
            f"{_setup(r)}, attention {_path(r)}",
            f"per device: parameters {r['params_bytes'] / _GIB:.3f} GiB | optimizer state "
            f"{r['opt_state_bytes'] / _GIB:.3f} GiB | temporaries {r['temp_bytes'] / _GIB:.3f} GiB | "
            f"arguments {r['argument_bytes'] / _GIB:.3f} GiB | total about {r['total_bytes'] / _GIB:.3f} GiB | "
            f"peak {_peak(r, ' GiB')}",
            f"fits: {_fits(r, hbm)}",
            f"[.., L, L] buffers: {_shapes(r, 'length_by_length')} | "
            f"[.., L, V] buffers: {_shapes(r, 'length_by_vocab')}",
            _flops(r),
        ]
    )


def format_comparison(reports: list[dict], hbm: int = 0) -> str:
    """Several compiled steps of one config (e.g. xla and splash attention) side by side, per device."""
    first = reports[0]
    rows = [
        ("attention", [r["attention"] for r in reports]),
        ("attention dropout", [f"{r['attention_dropout']:g}" for r in reports]),
        ("parameters (GiB)", [f"{r['params_bytes'] / _GIB:.3f}" for r in reports]),
        ("optimizer state (GiB)", [f"{r['opt_state_bytes'] / _GIB:.3f}" for r in reports]),
        ("temporaries (GiB)", [f"{r['temp_bytes'] / _GIB:.3f}" for r in reports]),
        ("arguments (GiB)", [f"{r['argument_bytes'] / _GIB:.3f}" for r in reports]),
        ("total (GiB)", [f"{r['total_bytes'] / _GIB:.3f}" for r in reports]),
        ("peak (GiB)", [_peak(r) for r in reports]),
        ("fits", [_fits(r, hbm) for r in reports]),
        ("[.., L, L] buffers", [_shapes(r, "length_by_length", 1) for r in reports]),
        ("[.., L, V] buffers", [_shapes(r, "length_by_vocab", 1) for r in reports]),
    ]
    label = max(len(name) for name, _ in rows)
    width = max(len(v) for _, values in rows for v in values)
    lines = [f"{_setup(first)}; per device:"]
    lines += [f"  {name:<{label}}  " + "  ".join(f"{v:<{width}}" for v in values).rstrip() for name, values in rows]
    lines.append(_flops(first))
    return "\n".join(lines)


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
    reports = [compile_report(config, devices, keep_hlo=bool(f.hlo_dir)) for config in configs]
    if f.hlo_dir:
        folder = pathlib.Path(f.hlo_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for r in reports:
            (folder / f"train_step_{r['attention']}.hlo.txt").write_text(r.pop("hlo"))
    hbm = hbm_bytes(devices[0].device_kind, f.hbm_gib)
    text = format_comparison(reports, hbm) if len(reports) > 1 else format_report(reports[0], hbm)
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
