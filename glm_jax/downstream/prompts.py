"""Continuous prompt tokens in a task's rows (P-tuning, `prompt.*`; the model side is `glm_jax.model.prompt`).

`Prompts` says how many prompt tokens a row holds: `tokens` spread over the spots a pattern marks (the official
`None` parts, `cloze.PROMPT`) as the official `replace_prompt_tokens` spreads them (`spread`), and `prefix` more
at the start of Part A (the official `--prefix-prompt`). Prompt token k of a row, in row order, has the id
`base + k`, `base` the model's word-embedding rows, where the model puts the spell's row k.

A task is registered with its prompts (its preprocessor lays them out); `with_prompts` registers a task again,
as it was, with others (the kinds do, from the run's config).
"""

import dataclasses
from collections.abc import Callable

import ml_collections
import seqio

from glm_jax import config as config_lib


@dataclasses.dataclass(frozen=True)
class Prompts:
    tokens: int = 0  # spread over the spots
    prefix: int = 0  # at the start of Part A
    base: int = 0  # the id of prompt token 0: the model's word-embedding rows

    @property
    def length(self) -> int:
        return self.tokens + self.prefix

    def ids(self, start: int, count: int) -> list[int]:
        """The ids of prompt tokens `start` .. `start + count - 1`."""
        return list(range(self.base + start, self.base + start + count))


NO_PROMPTS = Prompts()


def from_config(c: ml_collections.ConfigDict, vocabulary: seqio.Vocabulary) -> Prompts:
    """The prompt tokens of config `c` (`prompt.*`), their ids past the word embeddings of its model of `vocabulary`."""
    return Prompts(c.prompt.tokens, c.prompt.prefix, config_lib.embedding_rows(c, vocabulary.vocab_size)[1])


def spread(tokens: int, spots: int) -> list[int]:
    """Prompt tokens at each of `spots` spots, as the official `replace_prompt_tokens`: ceil(tokens / spots) at
    each in turn until none are left (5 over 4 spots: 2, 2, 1, 0)."""
    if tokens and not spots:
        raise ValueError(f"prompt.tokens={tokens} needs prompt spots in the pattern; it has none (use prompt.prefix).")
    each = -(-tokens // spots) if spots else 0
    return [min(each, max(tokens - i * each, 0)) for i in range(spots)]


_REGISTRATIONS: dict[str, Callable] = {}  # task name → its registration, called with other `prompts`


def remember(name: str, register: Callable) -> None:
    """Keeps how task `name` was registered: `register(prompts=...)` registers it again with other prompts."""
    _REGISTRATIONS[name] = register


def with_prompts(name: str, prompts: Prompts) -> None:
    """Registers task `name` again as it was registered, with the prompt tokens `prompts`; a task registered
    otherwise (not by a glm_jax `register_*_task`) is an error where prompts are asked for."""
    if name in _REGISTRATIONS:
        _REGISTRATIONS[name](prompts=prompts)
    elif prompts.length:
        raise ValueError(f"Task {name!r} was not registered by a glm_jax register_*_task, so it takes no prompts.")
