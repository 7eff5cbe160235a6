"""Official GLM checkpoints (PyTorch, model-parallel size 1) into a glm_jax workdir, and back.

    python -m glm_jax.convert --checkpoint glm-large/pytorch_model.bin --workdir workdir/glm_large \\
        --model glm-large --vocabulary wordpiece:bert-base-uncased/vocab.txt [--base_config configs/glm_large.py]
    python -m glm_jax.convert --export --workdir workdir/glm_large --output out/pytorch_model.bin [--prefix glm.]
    python -m glm_jax.convert --export --workdir workdir/glm_large --hub out/glm-large [--overwrite]

Reads the released `pytorch_model.bin` (names with or without the hub's `glm.` prefix) and the
training `mp_rank_00_model_states.pt` (the state dict under `module`), zip or legacy format, without
PyTorch (`glm_jax.official.torch_format`), a `model.safetensors`, or a directory in the hub's layout
(`glm_jax.official.hub`; heads and vocabulary from its config.json and tokenizer files where not given).
The number of heads comes from `--heads` or a known `--model`
name; layers, width, vocabulary rows, positions and MLP ratio come from the tensor shapes. The new
workdir holds `config.json` (the base config with that shape, `data.vocabulary` set) and a step-0
checkpoint that `glm_jax.train` continues and generation and evaluation load.

`--export` writes the latest checkpoint of a workdir as an official state dict (float32, or
`--dtype float16|bfloat16`; `--module_key` nests it under `module` as the training scripts save it);
`--export --hub DIR` writes it in the hub's layout: weights (pytorch_model.bin, model.safetensors),
config.json and the tokenizer files of the workdir's vocabulary.
"""

import argparse
import os
import sys

import numpy as np

from glm_jax import cli
from glm_jax.official import hub, mapping, torch_format

# JAX, TensorFlow and the package's training modules load in the functions, so that --help needs none.

EXPORT_DTYPES = ("float32", "float16", "bfloat16")


def read_state_dict(path: str) -> dict:
    """The official state dict in a file (lazy `torch_format.Tensor` values), from either file layout, or
    in a safetensors file or hub directory (NumPy values)."""
    if os.path.isdir(path):
        path = hub.weights_file(path)
    if path.endswith(".safetensors"):
        return mapping.strip_prefix(hub.load_safetensors(path))
    obj = torch_format.load(path)
    if isinstance(obj, dict) and isinstance(obj.get("module"), dict):
        obj = obj["module"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    return mapping.strip_prefix({k: v for k, v in obj.items() if isinstance(v, torch_format.Tensor)})


def resolve_heads(heads: int | None, model: str | None) -> int:
    if model is not None and model not in mapping.KNOWN_HEADS:
        raise ValueError(f"Unknown --model {model!r}; known: {', '.join(mapping.KNOWN_HEADS)} (or give --heads).")
    known = mapping.KNOWN_HEADS.get(model)
    if heads is None and known is None:
        raise ValueError(f"Give --heads N or --model NAME (known: {', '.join(mapping.KNOWN_HEADS)}).")
    if heads is not None and known is not None and heads != known:
        raise ValueError(f"--heads {heads} contradicts --model {model} ({known} heads).")
    heads = heads if heads is not None else known
    if heads < 1:
        raise ValueError(f"--heads must be positive; got {heads}.")
    return heads


def convert(
    checkpoint: str,
    workdir: str,
    *,
    heads: int | None = None,
    model: str | None = None,
    vocabulary: str = "",
    base_config: str | None = None,
    scan_layers: bool | None = None,
) -> mapping.Shape:
    """Writes a new glm_jax workdir from an official checkpoint file or hub directory; returns the inferred shape."""
    import jax

    from glm_jax import config as config_lib
    from glm_jax import workdir as workdir_lib
    from glm_jax.data import vocab_spec
    from glm_jax.official import hub_tokenizer

    if os.path.isdir(checkpoint):
        heads = heads if heads is not None or model is not None else hub.read_heads(checkpoint)
        vocabulary = vocabulary or hub_tokenizer.spec_from_directory(checkpoint)
    heads = resolve_heads(heads, model)
    if not os.path.exists(checkpoint):
        raise ValueError(f"--checkpoint {checkpoint} does not exist.")
    if os.path.isfile(workdir):
        raise ValueError(f"--workdir {workdir} is a file; name a new directory.")
    if os.path.exists(workdir) and os.listdir(workdir):
        raise ValueError(f"--workdir {workdir} already exists and is not empty; choose a new directory.")
    c = config_lib.load_config_file(base_config) if base_config else config_lib.base_config()

    state_dict = read_state_dict(checkpoint)
    shape = mapping.infer_shape(state_dict)
    if shape.hidden % heads:
        raise ValueError(f"{heads} heads do not divide the width {shape.hidden} of {checkpoint}.")
    extra = sorted(set(state_dict) - set(mapping.official_names(shape.num_layers)))
    if extra:
        print(f"Ignoring {len(extra)} tensors that are not part of GLM: {', '.join(extra[:8])}", flush=True)

    c.model.num_layers, c.model.hidden, c.model.heads = shape.num_layers, shape.hidden, heads
    c.model.mlp_ratio, c.model.vocab_size, c.model.max_len = shape.mlp_ratio, shape.vocab_size, shape.max_len
    c.data.seq_len = min(c.data.seq_len, shape.max_len)
    if scan_layers is not None:
        c.model.scan_layers = scan_layers
    if vocabulary:
        vocab_spec.from_spec(vocabulary)  # fails early on a bad spec or missing files
        c.data.vocabulary = vocabulary
    config_lib.validate(c, jax.device_count())
    words = workdir_lib.model_vocabulary(c).vocab_size
    if words > shape.vocab_size:
        raise ValueError(
            f"The vocabulary has {words} ids but the checkpoint only {shape.vocab_size} embedding rows; "
            "give the model's own vocabulary with --vocabulary."
        )

    params = mapping.to_params(state_dict, heads, scan_layers=c.model.scan_layers)
    workdir_lib.write(workdir, c, params)
    return shape


def export(workdir: str, output: str, *, dtype: str = "float32", prefix: str = "", module_key: bool = False) -> int:
    """Writes the latest checkpoint of `workdir` as an official state dict file; returns its tensor count."""
    import jax

    from glm_jax import workdir as workdir_lib

    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"--dtype must be one of {EXPORT_DTYPES}; got {dtype!r}.")
    if os.path.exists(output):
        raise ValueError(f"--output {output} already exists; choose a new file.")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ValueError(f"--output {output}: the directory {folder} does not exist; create it first.")
    model = workdir_lib.load(workdir)
    params = jax.tree.map(np.asarray, jax.device_get(model.params))
    state_dict = mapping.to_official(params, dtype=_numpy_dtype(dtype), prefix=prefix)
    torch_format.save({"module": state_dict} if module_key else state_dict, output)
    return len(state_dict)


def export_hub(workdir: str, directory: str, *, dtype: str = "float32", overwrite: bool = False) -> tuple[int, list]:
    """Writes the latest checkpoint of `workdir` (a fine-tuned one's too: not `best/`) in the hub's layout
    into `directory` (`glm_jax.official.hub`); returns the step and the names of the files written.
    Bad input is refused before the parameters are read and before `directory` is made."""
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"--dtype must be one of {EXPORT_DTYPES}; got {dtype!r}.")
    hub.check_directory(directory, overwrite)
    import jax

    from glm_jax import workdir as workdir_lib
    from glm_jax.official import hub_tokenizer
    from glm_jax.training import checkpoints

    workdir = workdir_lib.absolute(workdir)
    c = workdir_lib.read_config(workdir)
    if not checkpoints.has_checkpoints(workdir):
        raise ValueError(f"{workdir}/checkpoints holds no checkpoint; train first (python -m glm_jax.train).")
    hub.check_mlp_ratio(c.model.mlp_ratio)
    spec = c.data.vocabulary or hub_tokenizer.spec_of(workdir_lib.model_vocabulary(c))

    model = workdir_lib.load(workdir)
    params = jax.tree.map(np.asarray, jax.device_get(model.params))
    state_dict = mapping.to_official(params, dtype=_numpy_dtype(dtype), prefix=mapping.HUB_PREFIX)
    shape = mapping.infer_shape(state_dict)
    config = hub.config_json(shape, c.model.heads, c.model.dropout, c.model.attention_dropout, dtype)
    os.makedirs(directory, exist_ok=True)
    files = hub.write_weights(directory, state_dict)
    files.append(hub.write_json(directory, hub.CONFIG, config))
    files += hub_tokenizer.write(directory, spec)
    return model.step, files


def _numpy_dtype(name: str):
    import jax

    return jax.numpy.bfloat16 if name == "bfloat16" else np.dtype(name)


def _parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser("glm_jax.convert", prog="python -m glm_jax.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("--export", action="store_true", help="write the workdir's latest checkpoint as a state dict")
    p.add_argument("--workdir", required=True, help="the new workdir (convert) or the one to export")
    p.add_argument("--checkpoint", help="official pytorch_model.bin or mp_rank_00_model_states.pt (convert)")
    p.add_argument("--model", help=f"a released model, for its number of heads: {', '.join(mapping.KNOWN_HEADS)}")
    p.add_argument("--heads", type=int, help="number of attention heads (instead of --model)")
    p.add_argument("--vocabulary", default="", help="the model's vocabulary spec, e.g. wordpiece:/path/vocab.txt")
    p.add_argument("--base_config", help="config file whose training settings the workdir takes (default: defaults)")
    p.add_argument("--scan_layers", action=argparse.BooleanOptionalAction, default=None, help="stack the layers")
    p.add_argument("--output", help="the state dict file to write (export)")
    p.add_argument("--dtype", default="float32", choices=EXPORT_DTYPES, help="tensor dtype of the export")
    p.add_argument("--prefix", default="", help="prefix of every exported name, e.g. glm. as on the hub")
    p.add_argument("--module_key", action="store_true", help="nest the export under 'module' (training layout)")
    p.add_argument("--hub", help="the directory to write in the hub's layout (export; instead of --output)")
    p.add_argument("--overwrite", action="store_true", help="replace the hub's files in an existing --hub directory")
    return p


def main(argv=None) -> int:
    """The command: 0 when done, 2 (after one error line on stderr) for bad input."""
    args = _parser().parse_args(argv)
    cli.load_tensorflow()
    return cli.call("glm_jax.convert", _run, args)


def _run(args) -> None:
    if args.export:
        if bool(args.output) == bool(args.hub):
            raise ValueError("--export needs one of --output FILE or --hub DIR.")
        if args.hub:
            if args.prefix or args.module_key:
                raise ValueError("--hub writes the hub's own names: drop --prefix and --module_key.")
            step, files = export_hub(args.workdir, args.hub, dtype=args.dtype, overwrite=args.overwrite)
            print(f"Wrote step {step} of {args.workdir} ({args.dtype}) to {args.hub}: {', '.join(files)}")
            return
        count = export(args.workdir, args.output, dtype=args.dtype, prefix=args.prefix, module_key=args.module_key)
        print(f"Wrote {count} tensors ({args.dtype}) to {args.output}")
        return
    if not args.checkpoint:
        raise ValueError("Give --checkpoint FILE to convert (or --export with --output FILE or --hub DIR).")
    shape = convert(
        args.checkpoint,
        args.workdir,
        heads=args.heads,
        model=args.model,
        vocabulary=args.vocabulary,
        base_config=args.base_config,
        scan_layers=args.scan_layers,
    )
    from glm_jax import workdir as workdir_lib

    print(
        f"Converted {args.checkpoint}: {shape.num_layers} layers, hidden {shape.hidden}, "
        f"{workdir_lib.read_config(args.workdir).model.heads} heads, {shape.vocab_size} embedding rows, "
        f"positions up to {shape.max_len} → {args.workdir}"
    )


if __name__ == "__main__":
    cli.quiet()
    sys.exit(main())
