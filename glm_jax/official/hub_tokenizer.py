"""Tokenizer files in the hub's GLM layout, from a vocabulary spec (`data.vocabulary`) and back.

The released repositories load their tokenizer with the hub's `tokenization_glm.py`: the class
that `tokenizer_config.json` names reads its files from fixed names beside it, and
`added_tokens.json` gives the ids of GLM's command tokens that those files lack (the official
tokenizers append them after the files' own tokens):

    data.vocabulary kind           tokenizer_class        files
    wordpiece, wordpiece-cased     GLMBertTokenizer       vocab.txt
    bpe                            GLMGPT2Tokenizer       vocab.json, merges.txt
    glm-chinese, glm-chinese-10b   GLMChineseTokenizer    cog-pretrain.model
    spm, default                   GLMChineseTokenizer    cog-pretrain.model

No released model has an `spm` or the `default` vocabulary (glm_jax's shipped SentencePiece
model). GLMChineseTokenizer is the hub's class for any SentencePiece model, and such a model holds
the command tokens as its own pieces (added_tokens.json is then empty), so the model is written
under the file name that class reads. `tokenizer_config.json` also holds `glm_jax_vocabulary`,
the kind, which transformers ignores and `spec_from_directory` reads back.
"""

import dataclasses
import json
import os
import shutil

import sentencepiece

from glm_jax.data import vocab, vocab_spec
from glm_jax.data.command_tokens import PIECES
from glm_jax.official import hub

TOKENIZER_CONFIG = "tokenizer_config.json"
ADDED_TOKENS = "added_tokens.json"


@dataclasses.dataclass(frozen=True)
class Kind:
    hub_class: str  # in the hub's tokenization_glm.py
    files: tuple[str, ...]  # names in the directory, in the order the spec lists its paths


KINDS = {
    "wordpiece": Kind("GLMBertTokenizer", ("vocab.txt",)),
    "wordpiece-cased": Kind("GLMBertTokenizer", ("vocab.txt",)),
    "bpe": Kind("GLMGPT2Tokenizer", ("vocab.json", "merges.txt")),
    "glm-chinese": Kind("GLMChineseTokenizer", ("cog-pretrain.model",)),
    "glm-chinese-10b": Kind("GLMChineseTokenizer", ("cog-pretrain.model",)),
    "spm": Kind("GLMChineseTokenizer", ("cog-pretrain.model",)),
    "default": Kind("GLMChineseTokenizer", ("cog-pretrain.model",)),
}
# A command token past the files' own tokens is written as the official tokenizers name it.
APPENDED_NAMES = {**PIECES, "pad": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "[UNK]"}
_ROLES = {  # tokenizer_config.json key -> command token
    "eos_token": "eos",
    "pad_token": "pad",
    "unk_token": "unk",
    "cls_token": "cls",
    "sep_token": "sep",
    "mask_token": "mask",
}
_ADDITIONAL = ("sop", "eop", "gmask", "smask")  # additional_special_tokens, as the released configs list them


def spec_of(vocabulary) -> str:
    """The spec of a task's vocabulary (a workdir with `data.vocabulary` unset): its SentencePiece model."""
    if not isinstance(vocabulary, vocab.GLMSentencePieceVocabulary):
        raise ValueError(
            f"The workdir's vocabulary is a {type(vocabulary).__name__} without a spec: set data.vocabulary "
            "in its config.json (e.g. wordpiece:/path/vocab.txt) to name its files."
        )
    path = vocabulary.sentencepiece_model_file
    return "default" if path == vocab.DEFAULT_SPM_PATH else f"spm:{path}"


def _kind_and_paths(spec: str) -> tuple[str, list[str]]:
    """A spec that `vocab_spec.from_spec` accepts, split into its kind and file paths."""
    kind, _, paths = spec.partition(":")
    return kind, paths.split(",") if paths else [vocab.DEFAULT_SPM_PATH]


def file_tokens(kind: str, paths: list[str]) -> list[str]:
    """The tokens the vocabulary's files define, in id order (the hub's tokenizer reads the same)."""
    with open(paths[0], "rb") as f:
        data = f.read()
    if KINDS[kind].hub_class == "GLMBertTokenizer":
        return [line.rstrip() for line in data.decode("utf-8").rstrip("\n").split("\n")]
    if kind == "bpe":
        ids = json.loads(data)
        return sorted(ids, key=ids.get)
    processor = sentencepiece.SentencePieceProcessor(model_proto=data)
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def write(directory: str, spec: str) -> list[str]:
    """The tokenizer files of vocabulary `spec` in `directory`; returns their names."""
    tokens = vocab_spec.from_spec(spec).command_tokens  # fails first on a bad spec or missing files
    kind, paths = _kind_and_paths(spec)
    base = file_tokens(kind, paths)
    ids = {field.name: getattr(tokens, field.name) for field in dataclasses.fields(tokens)}
    names = {name: base[i] if i < len(base) else APPENDED_NAMES[name] for name, i in ids.items()}
    added = {names[name]: i for name, i in sorted(ids.items(), key=lambda item: item[1]) if i >= len(base)}
    hub_class = KINDS[kind].hub_class
    config = {role: names[name] for role, name in _ROLES.items()}
    config["additional_special_tokens"] = [names[name] for name in _ADDITIONAL]
    if hub_class == "GLMBertTokenizer":
        config["do_lower_case"] = kind == "wordpiece"
    config |= {
        "add_prefix_space": False,
        "tokenizer_class": hub_class,
        "use_fast": False,
        "auto_map": {"AutoTokenizer": [f"tokenization_glm.{hub_class}", None]},
        "glm_jax_vocabulary": kind,
    }
    written = [
        hub.write_file(directory, name, lambda target, source=source: shutil.copyfile(source, target))
        for name, source in zip(KINDS[kind].files, paths, strict=True)
    ]
    written.append(hub.write_json(directory, ADDED_TOKENS, added))
    written.append(hub.write_json(directory, TOKENIZER_CONFIG, config))
    return written


_KIND_OF_CLASS = {"GLMBertTokenizer": "wordpiece", "GLMGPT2Tokenizer": "bpe", "GLMRobertaTokenizer": "bpe"}


def spec_from_directory(directory: str) -> str:
    """The vocabulary spec of a hub directory's tokenizer files ("" without tokenizer_config.json)."""
    path = os.path.join(directory, TOKENIZER_CONFIG)
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    hub_class = config.get("tokenizer_class")
    kind = config.get("glm_jax_vocabulary") or _KIND_OF_CLASS.get(hub_class)
    if hub_class == "GLMBertTokenizer" and config.get("do_lower_case") is False:
        kind = "wordpiece-cased"
    if kind is None:
        choices = ""
        if hub_class == "GLMChineseTokenizer":  # glm-large-chinese's and glm-10b-chinese's: ids differ
            model = os.path.join(directory, "cog-pretrain.model")
            choices = f": glm-chinese:{model} (glm-large-chinese) or glm-chinese-10b:{model} (glm-10b-chinese)"
        raise ValueError(f"{path} names tokenizer class {hub_class!r}; give --vocabulary SPEC{choices}.")
    if kind not in KINDS:
        raise ValueError(f"{path} names glm_jax_vocabulary {kind!r}, not one of {', '.join(KINDS)}.")
    kind = "spm" if kind == "default" else kind
    return f"{kind}:{','.join(os.path.join(directory, name) for name in KINDS[kind].files)}"
