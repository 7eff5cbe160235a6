"""The embedded default corpus: English text that ships with every Python install.

Documents are harvested without importing anything: the docstrings of each standard-library
module (module, classes and functions, in source order, read with `ast`) and the reference
topics of `pydoc_data`. A document goes to the validation split when a CRC32 of its name
falls in a fixed bucket, so the splits hold different documents and are the same on every
machine running the same Python.
"""

import ast
import functools
import hashlib
import json
import os
import pathlib
import sys
import sysconfig
import zlib

SPLITS = ("train", "validation")
_VALIDATION_BUCKETS = 10  # 1 in 10 documents is held out.
_MIN_CHARS = 200
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "dist-packages"}


def _definitions(statements):
    """Class and function definitions among `statements` and the blocks nested in them."""
    for node in statements:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                yield from _definitions(block)


def _docstrings(path: pathlib.Path) -> list[str]:
    """The docstrings of one source file (module, classes, functions), in source order."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    nodes = [tree, *sorted(_definitions(tree.body), key=lambda n: n.lineno)]
    docs = (ast.get_docstring(n, clean=True) for n in nodes)
    return [d.strip() for d in docs if d and d.strip()]


def _stdlib_sources() -> list[tuple[str, pathlib.Path]]:
    """(document name, path) of every standard-library source file, in a fixed order."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    sources = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if not _SKIP_DIRS.intersection(relative.parts[:-1]):
            sources.append((f"module:{relative.as_posix()}", path))
    return sources


def _cache_path(sources) -> pathlib.Path:
    """Where the parsed docstrings of exactly these files (names, sizes, times) are kept."""
    key = hashlib.sha256(sys.version.encode())
    for name, path in sources:
        stat = path.stat()
        key.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    root = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return root / "glm_jax" / f"stdlib_docstrings_{key.hexdigest()[:20]}.json"


@functools.cache
def _stdlib_docstrings() -> dict[str, tuple[str, ...]]:
    """Module name → its docstrings, for every standard-library source file.

    Parsing the whole standard library takes seconds, so the result is kept in the user's cache
    directory, keyed by the Python version and every file's size and modification time.
    """
    sources = _stdlib_sources()
    cache = _cache_path(sources)
    try:
        return {name: tuple(docs) for name, docs in json.loads(cache.read_text()).items()}
    except (OSError, ValueError):
        pass
    docs = {name: tuple(_docstrings(path)) for name, path in sources}
    try:  # written whole, then renamed: a concurrent reader never sees half a file
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(docs))
        partial.replace(cache)
    except OSError:  # a read-only home: parse again next time
        pass
    return docs


def _stdlib_documents() -> dict[str, str]:
    """Each module's docstrings as one document, separated by blank lines."""
    return {name: "\n\n".join(docs) for name, docs in _stdlib_docstrings().items()}


def _pydoc_topic_documents() -> dict[str, str]:
    from pydoc_data import topics  # Plain data module: a dict of reference texts.

    return {f"topic:{name}": text for name, text in sorted(topics.topics.items())}


def _split_of(name: str) -> str:
    return "validation" if zlib.crc32(name.encode()) % _VALIDATION_BUCKETS == 0 else "train"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} of the default corpus; use one of {SPLITS}.")


@functools.cache
def documents(split: str) -> tuple[str, ...]:
    """The documents of `split` ('train' or 'validation'), in a fixed order."""
    _check_split(split)
    named = {**_stdlib_documents(), **_pydoc_topic_documents()}
    return tuple(text for name, text in sorted(named.items()) if len(text) >= _MIN_CHARS and _split_of(name) == split)


@functools.cache
def summarized_docstrings(split: str) -> tuple[tuple[str, str], ...]:
    """(summary line, body) of the standard library's docstrings in the modules of `split` that
    follow PEP 257: a one-line summary ending in a period, a blank line, then a body."""
    _check_split(split)
    pairs = []
    for name, docs in sorted(_stdlib_docstrings().items()):
        if _split_of(name) != split:
            continue
        for doc in docs:
            summary, blank, body = doc.partition("\n\n")
            if blank and "\n" not in summary and summary.endswith(".") and body.strip():
                pairs.append((summary.strip(), body.strip()))
    return tuple(pairs)
