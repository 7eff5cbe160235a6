"""Compile-only: lowers and compiles the train step for a config and mesh, without training.

    python -m glm_jax.compile --config configs/glm_large.py [--topology v5p:2x2x1] [--config.a.b=v]

Prints the per-device memory of parameters, optimizer state and the compiler's temporaries (from
the compiled memory analysis) and the model FLOPs of one step. With `--topology` it compiles for
TPU devices described by `jax.experimental.topologies` (needs `libtpu`, no TPU): this is how a
CPU-only machine checks that a model fits a pod slice before launch. Without it, it compiles for
the local devices (e.g. 8 fake CPU devices with XLA_FLAGS=--xla_force_host_platform_device_count=8).
"""

import os

from absl import flags
from ml_collections import config_flags

from glm_jax import cli

# JAX and the package's training modules load in the functions, so that --help needs none of them.

_VOCAB = 8000  # the shipped vocabulary; set model.vocab_size for another (e.g. 30592 BERT, 50304 GPT-2)


def topology_devices(name: str) -> list:
    """Devices of a TPU topology such as 'v5p:2x2x1', from libtpu, with no TPU attached."""
    from jax.experimental import topologies

    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
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


def compile_report(c, devices) -> dict:
    """Compiles the train step of config `c` over `devices`; returns memory and FLOP figures."""
    import jax
    import numpy as np

    from glm_jax import config as config_lib
    from glm_jax.data.feature_converter import CONTRACT_FIELDS
    from glm_jax.training import flops, sharding
    from glm_jax.training.synthetic import TOKENS, visible_pairs
    from glm_jax.training.trainer import Trainer, model_config

    config_lib.validate(c, len(devices))
    glm_config = model_config(c, _VOCAB, TOKENS)
    mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.tensor, devices=devices)
    trainer = Trainer(c, glm_config, mesh)
    shape = (c.data.batch_size, c.data.seq_len)
    batch = {k: jax.ShapeDtypeStruct(shape, np.int32, sharding=trainer.batch_sharding) for k in CONTRACT_FIELDS}
    compiled = trainer.lower_train_step(trainer.abstract_state, batch).compile()
    memory = compiled.memory_analysis()
    model_flops = flops.train_flops(glm_config, shape[0] * shape[1], visible_pairs(*shape))
    return {
        "device": devices[0].device_kind,
        "devices": len(devices),
        "mesh": dict(mesh.shape),
        "parameters": trainer.num_params(),
        "params_bytes": _bytes_per_device(trainer.abstract_state.params),
        "opt_state_bytes": _bytes_per_device(trainer.abstract_state.opt_state),
        "temp_bytes": memory.temp_size_in_bytes,
        "argument_bytes": memory.argument_size_in_bytes,
        "output_bytes": memory.output_size_in_bytes,
        "alias_bytes": memory.alias_size_in_bytes,
        "model_flops": model_flops,
    }


def format_report(r: dict) -> str:
    gib = 1 << 30
    peak = r["argument_bytes"] + r["output_bytes"] - r["alias_bytes"] + r["temp_bytes"]
    return "\n".join(
        [
            f"{r['devices']} x {r['device']}, mesh {r['mesh']}, {r['parameters']:,} parameters",
            f"per device: parameters {r['params_bytes'] / gib:.3f} GiB | optimizer state "
            f"{r['opt_state_bytes'] / gib:.3f} GiB | temporaries {r['temp_bytes'] / gib:.3f} GiB | "
            f"arguments {r['argument_bytes'] / gib:.3f} GiB | total about {peak / gib:.3f} GiB",
            f"model FLOPs per step {r['model_flops']:.4g} ({r['model_flops'] / r['devices']:.4g} per device)",
        ]
    )


def main(argv):
    cli.no_arguments(argv)
    import jax

    topology = flags.FLAGS.topology
    devices = topology_devices(topology) if topology else jax.devices()
    print(format_report(compile_report(cli.config_value(), devices)), flush=True)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/glm_large.py.", lock_config=True)
    flags.DEFINE_string("topology", "", "TPU topology to compile for, e.g. v5p:2x2x1; empty: the local devices.")
    flags.mark_flags_as_required(["config"])
    cli.run(main, "glm_jax.compile")
