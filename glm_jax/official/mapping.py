"""The official GLM state dict (PyTorch, model-parallel size 1) and glm_jax parameters, both ways.

Official names and shapes (PyTorch linear weights are `[out, in]`):

    word_embeddings.weight                                   [V, h]
    transformer.position_embeddings.weight                   [P + 1, h]
    transformer.block_position_embeddings.weight             [P + 1, h]
    transformer.layers.{i}.input_layernorm.{weight,bias}     [h]
    transformer.layers.{i}.attention.query_key_value.weight  [3h, h]  rows: Q, K, V; in each, head by head
    transformer.layers.{i}.attention.query_key_value.bias    [3h]
    transformer.layers.{i}.attention.dense.{weight,bias}     [h, h], [h]
    transformer.layers.{i}.post_attention_layernorm.{weight,bias}
    transformer.layers.{i}.mlp.dense_h_to_4h.{weight,bias}   [4h, h], [4h]
    transformer.layers.{i}.mlp.dense_4h_to_h.{weight,bias}   [h, 4h], [h]
    transformer.final_layernorm.{weight,bias}                [h]

Hub files prefix every name with `glm.`; both forms are read. glm_jax keeps the same arrays with
the fused QKV kernel as `[h, 3, heads, head_dim]` and the output projection as `[heads, head_dim, h]`
(see `glm_jax.model.glm`), under `layers_{i}` or, with `scan_layers`, stacked under `layers`.
"""

import collections
import dataclasses

import numpy as np

from glm_jax.official import torch_format

# Heads of the released models (the official model scripts), for names a user may give instead of --heads.
KNOWN_HEADS = {
    "glm-base": 12,
    "glm-large": 16,
    "glm-large-chinese": 16,
    "glm-roberta-large": 16,
    "glm-410m": 16,
    "glm-515m": 18,
    "glm-2b": 32,
    "glm-10b": 64,
    "glm-10b-chinese": 64,
}

HUB_PREFIX = "glm."

_LAYER_NORMS = ("input_layernorm", "post_attention_layernorm")


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a state dict's tensor shapes say about the model (all but the number of heads)."""

    num_layers: int
    hidden: int
    vocab_size: int  # embedding rows
    max_len: int  # largest position: the position tables hold max_len + 1 rows
    mlp_ratio: int


def official_names(num_layers: int) -> list[str]:
    """Every tensor name of an official state dict of `num_layers` layers, in the official order."""
    names = ["word_embeddings.weight"]
    names += [f"transformer.{table}.weight" for table in ("position_embeddings", "block_position_embeddings")]
    for i in range(num_layers):
        p = f"transformer.layers.{i}."
        for module in ("input_layernorm", "attention.query_key_value", "attention.dense", "post_attention_layernorm"):
            names += [p + module + ".weight", p + module + ".bias"]
        for module in ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"):
            names += [p + module + ".weight", p + module + ".bias"]
    names += ["transformer.final_layernorm.weight", "transformer.final_layernorm.bias"]
    return names


def strip_prefix(state_dict: dict) -> dict:
    """The state dict with the hub's `glm.` prefix removed (when every name has it)."""
    if state_dict and all(name.startswith(HUB_PREFIX) for name in state_dict):
        return {name[len(HUB_PREFIX) :]: value for name, value in state_dict.items()}
    return dict(state_dict)


_WIDTH_NAMES = (
    "word_embeddings.weight",
    "transformer.position_embeddings.weight",
    "transformer.final_layernorm.weight",
    "transformer.layers.0.input_layernorm.weight",
    "transformer.layers.0.attention.dense.weight",
)


def infer_shape(state_dict: dict) -> Shape:
    """Layers, width, vocabulary rows, positions and MLP ratio from the tensor shapes (`.shape` of any
    array-like value). Raises ValueError listing missing names or naming an inconsistent shape."""
    shape_of = {name: tuple(value.shape) for name, value in strip_prefix(state_dict).items()}
    if "word_embeddings.weight" not in shape_of:
        raise ValueError(f"Not an official GLM state dict: no word_embeddings.weight among {sorted(shape_of)[:8]}.")
    vocab_size = shape_of["word_embeddings.weight"][0]
    # The width most tensors agree on, so that one narrowed tensor is the one reported below.
    widths = [shape_of[n][-1] for n in _WIDTH_NAMES if n in shape_of and shape_of[n]]
    hidden = collections.Counter(widths).most_common(1)[0][0]
    num_layers = 0
    while f"transformer.layers.{num_layers}.input_layernorm.weight" in shape_of:
        num_layers += 1
    missing = [name for name in official_names(num_layers) if name not in shape_of]
    if num_layers == 0 or missing:
        missing = missing or ["transformer.layers.0.*"]
        raise ValueError(f"The state dict lacks {len(missing)} official tensors: {', '.join(missing[:10])}.")
    positions = shape_of["transformer.position_embeddings.weight"][0]
    mlp = shape_of["transformer.layers.0.mlp.dense_h_to_4h.weight"][0]
    if mlp % hidden:
        raise ValueError(f"mlp.dense_h_to_4h has {mlp} rows, not a multiple of the width {hidden}.")
    shape = Shape(num_layers, hidden, vocab_size, positions - 1, mlp // hidden)
    expected = expected_shapes(shape)
    wrong = [f"{n} {shape_of[n]} (expected {s})" for n, s in expected.items() if shape_of[n] != s]
    if wrong:
        raise ValueError(f"Inconsistent tensor shapes: {'; '.join(wrong[:5])}.")
    return shape


def expected_shapes(shape: Shape) -> dict[str, tuple[int, ...]]:
    h, m = shape.hidden, shape.mlp_ratio * shape.hidden
    per_module = {
        "input_layernorm.weight": (h,),
        "input_layernorm.bias": (h,),
        "attention.query_key_value.weight": (3 * h, h),
        "attention.query_key_value.bias": (3 * h,),
        "attention.dense.weight": (h, h),
        "attention.dense.bias": (h,),
        "post_attention_layernorm.weight": (h,),
        "post_attention_layernorm.bias": (h,),
        "mlp.dense_h_to_4h.weight": (m, h),
        "mlp.dense_h_to_4h.bias": (m,),
        "mlp.dense_4h_to_h.weight": (h, m),
        "mlp.dense_4h_to_h.bias": (h,),
    }
    shapes = {}
    for name in official_names(shape.num_layers):
        if name.startswith("transformer.layers."):
            shapes[name] = per_module[name.split(".", 3)[3]]
        elif name == "word_embeddings.weight":
            shapes[name] = (shape.vocab_size, h)
        elif "position_embeddings" in name:
            shapes[name] = (shape.max_len + 1, h)
        else:
            shapes[name] = (h,)
    return shapes


def _layer_to_params(get, prefix: str, heads: int) -> dict:
    qkv = get(prefix + "attention.query_key_value.weight")  # [3h, h]
    hidden = qkv.shape[1]
    head_dim = hidden // heads
    params = {
        name: {"scale": get(f"{prefix}{name}.weight"), "bias": get(f"{prefix}{name}.bias")} for name in _LAYER_NORMS
    }
    params["attention"] = {
        "query_key_value": {
            "kernel": qkv.reshape(3, heads, head_dim, hidden).transpose(3, 0, 1, 2),
            "bias": get(prefix + "attention.query_key_value.bias").reshape(3, heads, head_dim),
        },
        "dense": {
            "kernel": get(prefix + "attention.dense.weight").T.reshape(heads, head_dim, hidden),
            "bias": get(prefix + "attention.dense.bias"),
        },
    }
    params["mlp"] = {
        name: {"kernel": get(f"{prefix}mlp.{name}.weight").T, "bias": get(f"{prefix}mlp.{name}.bias")}
        for name in ("dense_h_to_4h", "dense_4h_to_h")
    }
    return params


def to_params(state_dict: dict, heads: int, scan_layers: bool = False, dtype=np.float32) -> dict:
    """glm_jax parameters (NumPy, `dtype`) from an official state dict of arrays or `torch_format.Tensor`s."""
    state_dict = strip_prefix(state_dict)
    shape = infer_shape(state_dict)
    if shape.hidden % heads:
        raise ValueError(f"heads={heads} does not divide the width {shape.hidden}.")

    def get(name):
        return np.ascontiguousarray(torch_format.to_numpy(state_dict[name]), dtype)

    params = {
        "word_embeddings": {"embedding": get("word_embeddings.weight")},
        "position_embeddings": {"embedding": get("transformer.position_embeddings.weight")},
        "block_position_embeddings": {"embedding": get("transformer.block_position_embeddings.weight")},
        "final_layernorm": {
            "scale": get("transformer.final_layernorm.weight"),
            "bias": get("transformer.final_layernorm.bias"),
        },
    }
    layers = [_layer_to_params(get, f"transformer.layers.{i}.", heads) for i in range(shape.num_layers)]
    if scan_layers:
        params["layers"] = _tree_map(lambda *xs: np.stack(xs), *layers)
    else:
        params.update({f"layers_{i}": layer for i, layer in enumerate(layers)})
    return params


def _tree_map(fn, *trees):
    if isinstance(trees[0], dict):
        return {k: _tree_map(fn, *(t[k] for t in trees)) for k in trees[0]}
    return fn(*trees)


def _layer_to_official(layer: dict, prefix: str) -> dict:
    qkv, dense = layer["attention"]["query_key_value"], layer["attention"]["dense"]
    hidden = qkv["kernel"].shape[0]
    norm = lambda name: {f"{prefix}{name}.weight": layer[name]["scale"], f"{prefix}{name}.bias": layer[name]["bias"]}  # noqa: E731
    out = norm("input_layernorm")
    out[prefix + "attention.query_key_value.weight"] = qkv["kernel"].transpose(1, 2, 3, 0).reshape(3 * hidden, hidden)
    out[prefix + "attention.query_key_value.bias"] = qkv["bias"].reshape(3 * hidden)
    out[prefix + "attention.dense.weight"] = dense["kernel"].reshape(hidden, hidden).T
    out[prefix + "attention.dense.bias"] = dense["bias"]
    out |= norm("post_attention_layernorm")
    for name in ("dense_h_to_4h", "dense_4h_to_h"):
        out[f"{prefix}mlp.{name}.weight"] = layer["mlp"][name]["kernel"].T
        out[f"{prefix}mlp.{name}.bias"] = layer["mlp"][name]["bias"]
    return out


def to_official(params: dict, dtype=np.float32, prefix: str = "") -> dict[str, np.ndarray]:
    """The official state dict (C-ordered NumPy arrays of `dtype`, official order) of glm_jax parameters,
    scanned or not, with every name prefixed by `prefix` (e.g. `glm.` for the hub layout)."""
    params = _tree_map(np.asarray, params)
    if "layers" in params:
        count = params["layers"]["input_layernorm"]["scale"].shape[0]
        layers = [_tree_map(lambda x, i=i: x[i], params["layers"]) for i in range(count)]
    else:
        layers = [params[f"layers_{i}"] for i in range(sum(k.startswith("layers_") for k in params))]
    out = {
        "word_embeddings.weight": params["word_embeddings"]["embedding"],
        "transformer.position_embeddings.weight": params["position_embeddings"]["embedding"],
    }
    if "block_position_embeddings" in params:  # not in a model without block positions (BERT, GPT baselines)
        out["transformer.block_position_embeddings.weight"] = params["block_position_embeddings"]["embedding"]
    for i, layer in enumerate(layers):
        out.update(_layer_to_official(layer, f"transformer.layers.{i}."))
    out["transformer.final_layernorm.weight"] = params["final_layernorm"]["scale"]
    out["transformer.final_layernorm.bias"] = params["final_layernorm"]["bias"]
    return {prefix + name: np.ascontiguousarray(value, dtype) for name, value in out.items()}
