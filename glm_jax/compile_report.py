"""Compile-only reports of the train step: per-device memory (XLA's memory analysis), whether it fits, the model
FLOPs and the quadratic buffers, for the local devices or a TPU topology described on a CPU host
(`python -m glm_jax.compile`)."""

import re

import jax
import numpy as np

from glm_jax import config as config_lib
from glm_jax.config import model_config
from glm_jax.contract import CONTRACT_FIELDS
from glm_jax.training import chips, flops, sharding
from glm_jax.training.hlo_buffers import quadratic_buffers
from glm_jax.training.synthetic import TOKENS, synthetic_pairs
from glm_jax.training.trainer import Trainer

_VOCAB = 8000  # the shipped vocabulary; set model.vocab_size for another (e.g. 30592 BERT, 50304 GPT-2)
_GIB = 1 << 30


def _bytes_per_device(abstract_tree) -> int:
    """Bytes that one device holds of a tree of sharded abstract arrays."""
    leaves = jax.tree.leaves(abstract_tree)
    return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in leaves)


def hbm_bytes(device_kind: str, hbm_gib: float = 0.0) -> int:
    """Memory per device to check the peak against: `hbm_gib` if > 0, else the known chip's HBM, else 0 (unknown)."""
    known = chips.chip(device_kind)
    gib = hbm_gib if hbm_gib > 0 else (known.hbm_gib if known else 0)
    return int(gib * _GIB)


def lower_train_step(c, devices, max_scored: int | None = None):
    """(lowered train step, its `Trainer`) of config `c` over `devices`, for abstract arguments.

    The model is built for the devices' platform (`devices[0].platform`), which for a TPU topology
    described on a CPU host is "tpu": model.attention=auto resolves as on a TPU and the splash
    kernel lowers with Mosaic (not Pallas interpret mode).
    """

    config_lib.validate(c, len(devices))
    glm_config = model_config(c, _VOCAB, TOKENS, platform=devices[0].platform)
    mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor, devices=devices)
    trainer = Trainer(c, glm_config, mesh, max_scored=max_scored)
    shape = (c.data.batch_size, c.data.seq_len)
    batch = {k: jax.ShapeDtypeStruct(shape, np.int32, sharding=trainer.batch_sharding) for k in CONTRACT_FIELDS}
    return trainer.lower_train_step(trainer.abstract_state, batch), trainer


# The TPU compiler's refusal of a program that cannot fit, e.g. "RESOURCE_EXHAUSTED: Ran out of memory
# on HBM, the total memory required for HLO temporaries (400.03G) exceeds available HBM (95.74G)."
_OUT_OF_MEMORY = re.compile(r"RESOURCE_EXHAUSTED: Ran out of memory[^(]*\(([\d.]+)G\)[^(]*\(([\d.]+)G\)")


def compile_report(c, devices, *, keep_hlo: bool = False, max_scored: int | None = None) -> dict:
    """Compiles the train step of config `c` over `devices` (see `lower_train_step`); returns memory
    and FLOP figures and the quadratic buffers of the compiled module (`keep_hlo`: its text, "hlo").

    A step the TPU compiler refuses for want of HBM is reported, not raised: "out_of_memory" holds
    the compiler's message, the temporaries its figure, the buffers are the lowered module's
    (global shapes, before partitioning) and "device_memory_bytes" the HBM it names.
    """

    lowered, trainer = lower_train_step(c, devices, max_scored)
    glm_config, mesh = trainer.glm_config, trainer.mesh
    rows = c.data.batch_size // sharding.batch_shards(mesh)  # per device
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
        "trainable": sum(x.size for x in jax.tree.leaves(trainer.abstract_stored.params)),
        "trainable_spec": trainer.selection.spec,
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
    trains = f" ({r['trainable']:,} trainable: {r['trainable_spec']})" if r["trainable"] < r["parameters"] else ""
    return (
        f"{r['devices']} x {r['device']}, mesh {r['mesh']}, {r['parameters']:,} parameters{trains}, "
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
