"""Which parameters train (`train.trainable`), and a parameter tree split into those and the frozen rest.

`train.trainable` is `all`, `auto` or a comma list of terms, each a group (`lora`: every LoRA adapter;
`prompt`: the continuous prompts' spell) or a glob over parameter paths, the dict keys joined by `/`:

    layers_0/attention/query_key_value/kernel       layers/mlp/dense_4h_to_h/lora/a (scanned layers)
    */bias (BitFit)    *layernorm*    layers_11/*    classifier/*

`auto` is `lora` when lora.rank > 0, `prompt` (and `layers_0/*` ... of prompt.tune_prefix_layers) with
prompt.freeze_transformer (the official --freeze-transformer: word embeddings and transformer frozen), both
where both are set, else `all`.

The parameters a trainer adds to the model's (`Trainer.new_params`: a classifier head, which starts
fresh) always train. The train step differentiates the trainable parameters only (the frozen ones are
constants of the loss, so no gradient is computed for them), the optimizer keeps state for them only,
and checkpoints hold them only, with a reference to the frozen rest (`frozen_base`).
"""

import fnmatch

import jax
import optax
from flax import traverse_util

from glm_jax.model.lora import ADAPTER
from glm_jax.model.prompt import SPELL

ALL, AUTO = "all", "auto"
GROUPS = {"lora": (f"*/{ADAPTER}/*",), "prompt": (f"{SPELL}/*",)}  # group name → globs
MISSING = {"lora": "LoRA adapter: set lora.rank > 0", "prompt": "prompt spell: set prompt.tokens or prompt.prefix > 0"}


def path_name(path: tuple) -> str:
    """`('layers_0', 'mlp', 'dense_h_to_4h', 'kernel')` → `layers_0/mlp/dense_h_to_4h/kernel`."""
    return "/".join(str(key) for key in path)


def flat(tree) -> dict:
    """{path tuple: leaf} of a tree of nested dicts (boxed leaves stay whole)."""
    return traverse_util.flatten_dict(tree)


def nest(leaves: dict):
    """The nested dicts of `flat` leaves."""
    return traverse_util.unflatten_dict(leaves)


def subtree(tree, paths):
    """The leaves of `tree` at `paths`, as nested dicts."""
    leaves = flat(tree)
    return nest({path: leaves[path] for path in paths})


class Selection:
    """The trainable parameters of `spec` (a `train.trainable` value) in a model with adapters of
    `lora_rank` (0: none), the top-level keys `always` (a trainer's new parameters) included. `auto` follows
    `lora_rank`, `freeze_transformer` and `tune_prefix_layers` (see the module docstring)."""

    def __init__(self, spec: str, lora_rank: int = 0, always: tuple[str, ...] = (), freeze_transformer: bool = False,
                 tune_prefix_layers: int = 0):  # fmt: skip
        spec = spec.strip()
        if spec == AUTO:
            layers = [f"layers_{i}/*" for i in range(tune_prefix_layers)] if freeze_transformer else []
            terms = ["lora"] * bool(lora_rank) + ["prompt"] * freeze_transformer + layers
            spec = ",".join(terms) or ALL
        self.spec = spec
        self.terms = tuple(term.strip() for term in self.spec.split(",") if term.strip())
        self.freezes = self.terms != (ALL,)  # False: everything trains, and the trees are never split
        self.always = tuple(always)

    def _globs(self, term: str) -> tuple[str, ...]:
        return GROUPS.get(term, (term,))

    def trains(self, path: tuple) -> bool:
        if not self.freezes or path[0] in self.always:
            return True
        name = path_name(path)
        return any(fnmatch.fnmatchcase(name, glob) for term in self.terms for glob in self._globs(term))

    def split(self, params):
        """(trainable, frozen) parts of `params`, each as nested dicts; (params, {}) where everything trains."""
        if not self.freezes:
            return params, {}
        leaves = flat(params)
        trainable = {path: leaf for path, leaf in leaves.items() if self.trains(path)}
        return nest(trainable), nest({path: leaf for path, leaf in leaves.items() if path not in trainable})

    def join(self, trainable, frozen):
        """The whole tree of its two parts (`split`'s inverse)."""
        return nest({**flat(frozen), **flat(trainable)}) if frozen else trainable

    def check(self, params) -> None:
        """Raises ValueError naming the first term of the spec that selects nothing, a frozen LoRA adapter
        (it would never move from B = 0) or an empty selection."""
        if not self.terms:
            raise ValueError("Invalid config: train.trainable is empty: all, auto, lora or globs over parameter paths.")
        paths = list(flat(params))
        names = [path_name(path) for path in paths]
        for term in self.terms if self.freezes else ():
            if not any(fnmatch.fnmatchcase(name, glob) for glob in self._globs(term) for name in names):
                example = next((n for n in names if "kernel" in n), names[0])
                what = MISSING.get(term, f"parameter (paths read {example})")
                raise ValueError(f"Invalid config: train.trainable={self.spec!r}: {term!r} matches no {what}.")
        frozen = [path_name(path) for path in paths if ADAPTER in path and not self.trains(path)]
        if frozen:
            raise ValueError(
                f"Invalid config: train.trainable={self.spec!r} freezes the LoRA adapters (e.g. {frozen[0]}), "
                "which would never leave their start (B = 0); add 'lora' to it."
            )

    def optimizer(self, inner: optax.GradientTransformation) -> optax.GradientTransformation:
        """`inner` over the trainable parameters: `init` takes the whole tree and keeps state for its trainable
        leaves only, `update` takes the trainable gradients and parameters. `inner` itself where all train."""
        if not self.freezes:
            return inner
        return optax.GradientTransformation(lambda params: inner.init(self.split(params)[0]), inner.update)

    def summary(self, params) -> str:
        """`trainable 12,288 of 3,451,392 parameters (0.36%): lora` for `params` (arrays or shapes)."""
        count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))  # noqa: E731
        trainable, total = count(self.split(params)[0]), count(params)
        new = f", and the new {', '.join(self.always)}" if self.always else ""
        return f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%): {self.spec}{new}"
