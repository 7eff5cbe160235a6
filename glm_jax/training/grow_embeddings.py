"""Larger embedding tables for continued pretraining: more word rows, positions past `max_len`.

Pure functions on arrays and parameter trees (NumPy or JAX, inside `jax.jit` or not). The rows a
table has are kept bitwise; only rows past them are new. `glm_jax.continued` applies `grow_params`
to the parameters of an `--init` workdir.

New word-embedding rows (`NEW_ROWS`, config `train.init_new_rows`):

    official  each N(0, 0.02): every embedding row of a fresh model, here (model/glm.py) as in the
              official code (model/modeling_glm.py, GLMModel: init_method_normal(std=0.02)), which
              never grows a trained word table, so a token it adds starts as in a fresh model
    mean      the mean of the old rows that hold tokens (padding rows past them left out)

New rows of both position tables, largest position M -> N (`NEW_POSITIONS`, `train.init_new_positions`);
a table holds rows 0..M, and rows 0..M stay:

    copy         row i > M is old row M - ((N - i) mod M): the old rows 1..M, repeated to end at row N
    interpolate  row M + j (j = 1..N-M) is the old table at x = j * M / (N - M), linear between rows
                 floor(x) and floor(x) + 1: the old rows 0..M stretched (or squeezed) over the new rows
    official     each N(0, 0.02): the official load_pretrained (train_utils.py) keeps a fresh model's
                 rows past the checkpoint's

M = 4, N = 7: copy gives rows 5, 6, 7 = old rows 2, 3, 4; interpolate old rows 1.33, 2.67, 4 (row 5 is
2/3 of old row 1 plus 1/3 of old row 2). Both end on new row N = old row M, where a sentinel-token
model (`model.sentinel_positions`) puts Part B, and both give rows 1..M again when N = 2M.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

NEW_ROWS = ("official", "mean")
NEW_POSITIONS = ("copy", "interpolate", "official")
OFFICIAL_STD = 0.02  # the embeddings' initialization, model/glm.py and the official model alike
POSITION_TABLES = ("position_embeddings", "block_position_embeddings")  # the second absent without block positions


@dataclasses.dataclass(frozen=True)
class Growth:
    """What `grow_params` makes of a parameter tree: `rows` word-embedding rows (of which the old
    table's first `token_rows` hold tokens) and position tables up to `max_len`."""

    rows: int
    max_len: int
    token_rows: int
    new_rows: str = "official"
    new_positions: str = "copy"


def _normal_rows(key, count: int, like):
    return (OFFICIAL_STD * jax.random.normal(key, (count, like.shape[1]))).astype(like.dtype)


def _grows(table: str, old: int, new: int, how: str, choices) -> bool:
    """Whether `table` grows from `old` to `new`; a ValueError where it would shrink, or where `how`, the way
    its new rows start, is not one of `choices`."""
    if new < old:
        raise ValueError(f"The {table} would shrink from {old} to {new}: embedding tables only grow.")
    if how not in choices:
        raise ValueError(f"New rows of the {table} start as one of {choices}, not {how!r}.")
    return new > old


def grow_rows(table, rows: int, how: str, key, token_rows: int | None = None):
    """`table` [R, H] with rows R..rows-1 added (`how` in `NEW_ROWS`); the mean is over the first
    `token_rows` rows (default all). Fewer rows than R is a ValueError."""
    old = table.shape[0]
    if not _grows("word embeddings (rows)", old, rows, how, NEW_ROWS):
        return table
    if how == "mean":
        mean = jnp.mean(table[: token_rows or old].astype(jnp.float32), axis=0).astype(table.dtype)
        new = jnp.broadcast_to(mean, (rows - old, table.shape[1]))
    else:
        new = _normal_rows(key, rows - old, table)
    return jnp.concatenate([table, new])


def grow_positions(table, max_len: int, how: str, key):
    """A position table [M + 1, H] (positions 0..M) extended to positions 0..`max_len` (`how` in
    `NEW_POSITIONS`, see the module docstring). A smaller `max_len` than M is a ValueError."""
    old = table.shape[0] - 1
    if not _grows("position table (largest position)", old, max_len, how, NEW_POSITIONS):
        return table
    added = np.arange(old + 1, max_len + 1)
    if how == "copy":
        new = table[old - (max_len - added) % old]
    elif how == "interpolate":
        x = (added - old) * old / (max_len - old)
        low = np.minimum(np.floor(x).astype(np.int64), old - 1)
        weight = jnp.asarray(x - low, jnp.float32)[:, None]
        rows = table.astype(jnp.float32)
        new = ((1 - weight) * rows[low] + weight * rows[low + 1]).astype(table.dtype)
    else:
        new = _normal_rows(key, max_len - old, table)
    return jnp.concatenate([table, new])


def grow_params(params: dict, growth: Growth, key) -> dict:
    """`params` of a GLM with its word embeddings grown to `growth.rows` rows and its position tables to
    positions 0..`growth.max_len`; every other array is the same object."""
    words, *positions = jax.random.split(key, 1 + len(POSITION_TABLES))
    grown = dict(params)

    def replace(name, table):
        grown[name] = {**params[name], "embedding": table}

    table = params["word_embeddings"]["embedding"]
    replace("word_embeddings", grow_rows(table, growth.rows, growth.new_rows, words, growth.token_rows))
    for name, position_key in zip(POSITION_TABLES, positions, strict=True):
        if name in params:
            replace(name, grow_positions(params[name]["embedding"], growth.max_len, growth.new_positions, position_key))
    return grown
