"""Blank filling with a KV cache: greedy, sampled and beam-search decoding of GLM's Part B.

Layout of the cache (S slots per row): Part A first (the prompt, right-padded to A slots), then one
region of `max_new_tokens + 1` slots per blank, in blank order. Each blank is filled left to
right: `sop` at the blank's position with block position 1, then each generated token, until
`eop`. A slot is visible to later queries once written for a live row (`valid`), so later blanks
see the earlier fills, exactly as in the full forward over the contract fields of the result.

Every blank runs one jitted `lax.while_loop` (one token per step, no retracing); the loop for
blank j is the same compiled program for every j.
"""

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from glm_jax.contract import CommandTokens
from glm_jax.model.glm import GLM, GLMConfig
from glm_jax.model.layout import dense_mask, layout

STRATEGIES = ("greedy", "sample", "beam")


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    strategy: str = "greedy"  # greedy | sample | beam
    max_new_tokens: int = 32  # per blank
    min_new_tokens: int = 0  # eop is not allowed before this many tokens
    temperature: float = 1.0  # sample
    top_k: int = 0  # sample: keep the k most likely tokens (0: all)
    top_p: float = 1.0  # sample: keep the smallest set of tokens with this much probability
    num_beams: int = 4  # beam
    length_penalty: float = 1.0  # beam: hypotheses are ranked by log-prob / length ** length_penalty
    no_repeat_ngram_size: int = 0  # no n-gram of this size occurs twice in a fill (0: off)
    seed: int = 0  # sample

    def validate(self, max_len: int) -> None:
        checks = [
            (self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}"),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            (0 <= self.min_new_tokens <= self.max_new_tokens, "min_new_tokens must be in [0, max_new_tokens]"),
            (self.max_new_tokens + 1 <= max_len, f"max_new_tokens + 1 must be <= the model's max_len {max_len}"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.top_k >= 0, "top_k must be >= 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.num_beams >= 1, "num_beams must be >= 1"),
            (self.no_repeat_ngram_size >= 0, "no_repeat_ngram_size must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid decoding option: {message}.")


class Prompts:
    """Part A of a batch of prompts (host arrays) and where their blanks are.

    Each prompt becomes `[CLS] tokens [eos]` like the official model's inputs; a prompt without a
    blank marker gets `[gMASK]` before the `eos`, so it is continued. With `wrap=False` the token
    lists are Part A as they are (e.g. a seq2seq source laid out by its task) and must hold a blank.
    With `causal` (a left-to-right model, which continues each prompt) they are taken as they are
    and must hold none.
    """

    def __init__(self, token_lists, tokens: CommandTokens, pad_to: int = 0, wrap: bool = True, causal=False):
        markers = tokens.blank_markers
        rows = []
        for ids in token_lists:
            ids = list(ids)
            has_blank = any(t in markers for t in ids)
            if causal:
                if has_blank or not ids:
                    raise ValueError("A left-to-right model continues its prompt: give text without blanks.")
                rows.append(ids)
                continue
            if not wrap:
                if not has_blank:
                    raise ValueError("A Part A prompt (wrap=False) must hold a blank marker.")
                rows.append(ids)
                continue
            if not has_blank:
                ids.append(tokens.gmask)
            rows.append([tokens.cls, *ids, tokens.eos])
        self.length = max(pad_to, max(len(r) for r in rows))
        self.inputs = np.zeros((len(rows), self.length), np.int32)
        self.segment_ids = np.zeros((len(rows), self.length), np.int32)
        for i, row in enumerate(rows):
            self.inputs[i, : len(row)] = row
            self.segment_ids[i, : len(row)] = 1
        self.rows = rows
        self.blank_offsets = [[j for j, t in enumerate(row) if t in markers] for row in rows]
        self.num_blanks = max(len(b) for b in self.blank_offsets)

    def continuation(self) -> np.ndarray:
        """`[B, 1]` offset of each row's last token: where a left-to-right model continues it."""
        return np.array([[len(row) - 1] for row in self.rows], np.int32)

    def offsets_array(self) -> np.ndarray:
        """`[B, max blanks]` offset of each blank marker (0 where a row has fewer blanks)."""
        out = np.zeros((len(self.rows), self.num_blanks), np.int32)
        for i, offsets in enumerate(self.blank_offsets):
            out[i, : len(offsets)] = offsets
        return out


def init_cache(config: GLMConfig, batch: int, slots: int):
    head_dim = config.hidden // config.heads
    shape = (config.num_layers, batch, slots, config.heads, head_dim)
    return jnp.zeros(shape, config.dtype), jnp.zeros(shape, config.dtype)


def prefill_step(config: GLMConfig, inputs, segment_ids, slots: int):
    """The model input that writes Part A (`[B, A]`) into slots 0..A-1 of a cache of `slots` slots,
    and the slots then valid (`[B, slots]`)."""
    length = inputs.shape[1]
    part_a = {"inputs": inputs, "segment_ids": segment_ids, "span_ids": jnp.zeros_like(inputs)}
    positions, block_positions, segments, last_visible = layout(part_a, config.blank_markers, config.scheme)
    mask = dense_mask(segments, last_visible)
    valid = jnp.pad(segment_ids > 0, ((0, 0), (0, slots - length)))
    step = {
        "inputs": inputs,
        "positions": positions,
        "block_positions": block_positions,
        "mask": jnp.pad(mask, ((0, 0), (0, 0), (0, 0), (0, slots - length))),
        "index": 0,
    }
    return step, valid


def prefill(config: GLMConfig, params, inputs, segment_ids, slots: int):
    """Runs Part A (`[B, A]`) through the model into a new cache of `slots` slots.

    Returns (logits `[B, A, V]`, cache, valid `[B, slots]`).
    """
    step, valid = prefill_step(config, inputs, segment_ids, slots)
    logits, cache = GLM(config).apply({"params": params}, step, cache=init_cache(config, inputs.shape[0], slots))
    return logits, cache, valid


def extend(config: GLMConfig, params, cache, valid, tokens, position, index, live, block_start=1):
    """Appends Part B tokens `[B, T]` of one blank at slots `index..index+T-1` and runs them.

    `position` `[B]`: the offset of the blank they fill; the tokens are steps `block_start - 1, ...`
    of its Part B (block positions `block_start, block_start + 1, ...` in GLM's scheme; the model's
    `scheme.part_b` numbers them). `live` `[B, T]` bool marks the tokens that count: the
    others are written but stay invisible. Returns (logits `[B, T, V]`, cache, valid).
    """
    batch, steps = tokens.shape
    valid = valid | jax.lax.dynamic_update_slice_in_dim(jnp.zeros_like(valid), live, index, axis=1)
    slot = jnp.arange(valid.shape[1])
    causal = slot[None, :] <= index + jnp.arange(steps)[:, None]  # [T, S]
    positions, block_positions = config.scheme.part_b(position[:, None], block_start - 1 + jnp.arange(steps)[None])
    step = {
        "inputs": tokens,
        "positions": positions,
        "block_positions": block_positions,
        "mask": (valid[:, None, :] & causal[None])[:, None],
        "index": index,
    }
    logits, cache = GLM(config).apply({"params": params}, step, cache=cache)
    return logits, cache, valid


# --- Logits processing ---------------------------------------------------------------------------


def banned_ngrams(history, length, n: int, vocab: int):
    """`[N, vocab]` bool: tokens that would repeat an n-gram of `history[:, :length]` (`[N, m]`)."""
    rows, m = history.shape
    if n == 0 or m < n:
        return jnp.zeros((rows, vocab), bool)
    length = jnp.broadcast_to(length, (rows,))[:, None]
    starts = jnp.arange(m - n + 1)
    windows = history[:, starts[:, None] + jnp.arange(n - 1)[None]]  # [N, W, n-1]
    last = jnp.take_along_axis(history, jnp.clip(length - n + 1 + jnp.arange(n - 1)[None], 0, m - 1), axis=1)
    match = jnp.all(windows == last[:, None, :], axis=-1) & (starts[None] <= length - n)
    following = history[:, starts + n - 1]  # the token after each window
    row = jnp.broadcast_to(jnp.arange(rows)[:, None], following.shape)
    return jnp.zeros((rows, vocab), bool).at[row, following].max(match)


def constrain(logits, history, length, options: DecodeOptions, eop: int):
    """Log-probabilities after the min-length rule (no eop yet) and the no-repeat-n-gram rule."""
    logits = logits.astype(jnp.float32)
    too_short = jnp.broadcast_to(length, logits.shape[:1])[:, None] < options.min_new_tokens
    logits = jnp.where((jnp.arange(logits.shape[-1]) == eop) & too_short, -jnp.inf, logits)
    if options.no_repeat_ngram_size:
        banned = banned_ngrams(history, length, options.no_repeat_ngram_size, logits.shape[-1])
        logits = jnp.where(banned, -jnp.inf, logits)
    return jax.nn.log_softmax(logits)


def sample(rng, log_probs, options: DecodeOptions):
    """One token per row from temperature-scaled log-probabilities cut to top-k and top-p."""
    logits = log_probs / options.temperature
    if options.top_k:
        kth = jax.lax.top_k(logits, options.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if options.top_p < 1.0:
        ordered = jnp.sort(logits, axis=-1)[:, ::-1]
        mass_before = jnp.cumsum(jax.nn.softmax(ordered), axis=-1) - jax.nn.softmax(ordered)
        cutoff = jnp.min(jnp.where(mass_before < options.top_p, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(rng, logits).astype(jnp.int32)


def _only_eop(log_probs, eop):
    return jnp.where(jnp.arange(log_probs.shape[-1]) == eop, 0.0, -jnp.inf) + jnp.zeros_like(log_probs)


# --- One blank -----------------------------------------------------------------------------------


def fill_blank_sampled(config, tokens: CommandTokens, options: DecodeOptions, params, cache, valid, position, live,
                       start, rng):  # fmt: skip
    """Greedy or sampled fill of one blank for every row where `live`; returns the new cache and
    valid slots and the fill: tokens `[B, max_new_tokens]` (eop excluded) and their count `[B]`."""
    batch, most = live.shape[0], options.max_new_tokens

    def step(state):
        t, cache, valid, token, history, length, alive = state
        logits, cache, valid = extend(config, params, cache, valid, token[:, None], position, start + t, alive[:, None],
                                      block_start=t + 1)  # fmt: skip
        log_probs = constrain(logits[:, 0], history, length, options, tokens.eop)
        log_probs = jnp.where((length >= most)[:, None], _only_eop(log_probs, tokens.eop), log_probs)
        if options.strategy == "greedy":
            chosen = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
        else:
            chosen = sample(jax.random.fold_in(rng, t), log_probs, options)
        grows = alive & (chosen != tokens.eop)
        slot = jnp.minimum(length, most - 1)
        history = history.at[jnp.arange(batch), slot].set(jnp.where(grows, chosen, history[jnp.arange(batch), slot]))
        return t + 1, cache, valid, jnp.where(grows, chosen, token), history, length + grows, grows

    state = (0, cache, valid, jnp.full([batch], tokens.sop, jnp.int32), jnp.zeros([batch, most], jnp.int32),
             jnp.zeros([batch], jnp.int32), live)  # fmt: skip
    _, cache, valid, _, history, length, _ = jax.lax.while_loop(lambda s: jnp.any(s[-1]), step, state)
    return cache, valid, history, length


def fill_blank_beam(config, tokens: CommandTokens, options: DecodeOptions, params, cache, valid, position, live, start):
    """Beam search over the fill of one blank; the best hypothesis is then written into the cache.

    As in Hugging Face's beam search: each step keeps the 2K best continuations of the K live
    beams; an `eop` among the K best ends a hypothesis (scored log-prob / length ** penalty); the
    K best others go on. A row is done once it has K hypotheses and its best live beam (scored at
    the current length) is no better than the worst of them. One beam is greedy decoding.
    """
    batch, most, beams = live.shape[0], options.max_new_tokens, options.num_beams
    vocab = config.vocab_size
    tile = lambda x, axis=0: jnp.repeat(x, beams, axis=axis)  # noqa: E731
    length_norm = lambda n: jnp.maximum(n, 1).astype(jnp.float32) ** options.length_penalty  # noqa: E731

    def step(s):
        t = s["t"]
        alive = jnp.isfinite(s["scores"]) & ~s["done"][:, None]
        logits, beam_cache, beam_valid = extend(
            config, params, s["cache"], s["valid"], s["token"][:, None], tile(position), start + t,
            alive.reshape(-1, 1), block_start=t + 1,
        )  # fmt: skip
        log_probs = constrain(logits[:, 0], s["seqs"].reshape(batch * beams, most), t, options, tokens.eop)
        log_probs = jnp.where(t >= most, _only_eop(log_probs, tokens.eop), log_probs)
        candidates = s["scores"][:, :, None] + log_probs.reshape(batch, beams, vocab)
        top_scores, top = jax.lax.top_k(candidates.reshape(batch, beams * vocab), 2 * beams)
        parent, chosen = top // vocab, (top % vocab).astype(jnp.int32)
        ends = chosen == tokens.eop
        rank = jnp.arange(2 * beams)[None]
        # Hypotheses ended by eop among the K best join the finished ones; the K best of those stay.
        ended = jnp.where(ends & (rank < beams) & ~s["done"][:, None], top_scores / length_norm(t), -jnp.inf)
        pool_scores = jnp.concatenate([s["done_scores"], ended], axis=1)
        pool_seqs = jnp.concatenate([s["done_seqs"], jnp.take_along_axis(s["seqs"], parent[:, :, None], 1)], axis=1)
        pool_lengths = jnp.concatenate([s["done_lengths"], jnp.full_like(parent, t)], axis=1)
        done_scores, keep = jax.lax.top_k(pool_scores, beams)
        # The K best continuations without eop go on.
        pick = jnp.argsort(jnp.where(ends, rank + 2 * beams, rank), axis=1)[:, :beams]
        parent, chosen = jnp.take_along_axis(parent, pick, 1), jnp.take_along_axis(chosen, pick, 1)
        scores = jnp.where(jnp.take_along_axis(ends, pick, 1), -jnp.inf, jnp.take_along_axis(top_scores, pick, 1))
        seqs = jnp.take_along_axis(s["seqs"], parent[:, :, None], axis=1)
        seqs = seqs.at[:, :, jnp.minimum(t, most - 1)].set(jnp.where(t < most, chosen, seqs[:, :, most - 1]))
        rows = (jnp.arange(batch)[:, None] * beams + parent).reshape(-1)
        full = jnp.isfinite(done_scores[:, -1])
        best_live = jnp.max(scores, axis=1) / length_norm(t)
        done = s["done"] | (full & (best_live <= done_scores[:, -1])) | ~jnp.any(jnp.isfinite(scores), axis=1)
        return {
            "t": t + 1,
            "cache": jax.tree.map(lambda x: x[:, rows], beam_cache),
            "valid": beam_valid[rows],
            "token": chosen.reshape(-1),
            "seqs": seqs,
            "scores": scores,
            "done_seqs": jnp.take_along_axis(pool_seqs, keep[:, :, None], axis=1),
            "done_scores": done_scores,
            "done_lengths": jnp.take_along_axis(pool_lengths, keep, axis=1),
            "done": done,
        }

    empty = jnp.zeros([batch, beams, most], jnp.int32)
    state = {
        "t": 0,
        "cache": jax.tree.map(lambda x: tile(x, 1), cache),
        "valid": tile(valid),
        "token": jnp.full([batch * beams], tokens.sop, jnp.int32),
        "seqs": empty,
        "scores": jnp.where(jnp.arange(beams)[None] == 0, 0.0, -jnp.inf) * jnp.ones([batch, 1]),  # one live beam
        "done_seqs": empty,
        "done_scores": jnp.full([batch, beams], -jnp.inf),
        "done_lengths": jnp.zeros([batch, beams], jnp.int32),
        "done": ~live,
    }
    state = jax.lax.while_loop(lambda s: (s["t"] <= most) & ~jnp.all(s["done"]), step, state)
    best, length = state["done_seqs"][:, 0], jnp.where(live, state["done_lengths"][:, 0], 0)
    # Write the chosen fill (sop and its tokens) into the cache of the rows.
    span = jnp.concatenate([jnp.full([batch, 1], tokens.sop, jnp.int32), best], axis=1)
    written = (jnp.arange(most + 1)[None] <= length[:, None]) & live[:, None]
    _, cache, valid = extend(config, params, cache, valid, span, position, start, written)
    return cache, valid, best, length


class Decoder:
    """Fills the blanks of batches of prompts with one model, jitted once per shape.

    `partitioning`: a context manager that sets the mesh and logical-axis rules (e.g.
    `Trainer.partitioning`), so the decoder runs on the same meshes as training.
    """

    def __init__(self, config: GLMConfig, tokens: CommandTokens, options: DecodeOptions, partitioning=None):
        options.validate(config.max_len)
        self.config, self.tokens, self.options = config, tokens, options
        self.partitioning = partitioning
        self._prefill = jax.jit(functools.partial(prefill, config), static_argnums=3)
        if options.strategy == "beam":
            self._blank = jax.jit(functools.partial(fill_blank_beam, config, tokens, options))
        else:
            blank = functools.partial(fill_blank_sampled, config, tokens, options)
            self._blank = jax.jit(blank)

    def fill(self, params, prompts: Prompts):
        """Fills every blank of every prompt, in order; a left-to-right model (`config.causal`) has no
        blanks and continues each prompt after its last token instead, as one "blank".

        Returns the fills, tokens `[B, blanks, max_new_tokens]` (eop excluded), and their lengths `[B, blanks]`.
        """
        most = self.options.max_new_tokens
        region = most + 1
        if self.config.causal:
            offsets, counts = prompts.continuation(), np.ones(len(prompts.rows), np.int64)
        else:
            offsets, counts = prompts.offsets_array(), np.array([len(b) for b in prompts.blank_offsets])
        num_blanks = offsets.shape[1]
        slots = prompts.length + num_blanks * region
        room = prompts.length + (region if self.config.causal else 0)  # a causal model numbers its fills on
        if room > self.config.max_len:
            raise ValueError(
                f"Prompt of {prompts.length} tokens is longer than the model's max_len {self.config.max_len}"
                + (f" allows with {region} tokens after it (a left-to-right model)." if self.config.causal else ".")
            )
        fills = np.zeros((len(counts), num_blanks, most), np.int32)
        lengths = np.zeros((len(counts), num_blanks), np.int32)
        context = self.partitioning() if self.partitioning else contextlib.nullcontext()
        with context:
            _, cache, valid = self._prefill(params, prompts.inputs, prompts.segment_ids, slots)
            rng = jax.random.key(self.options.seed)
            for j in range(num_blanks):
                live = jnp.asarray(counts > j)
                start = jnp.int32(prompts.length + j * region)
                args = (params, cache, valid, jnp.asarray(offsets[:, j]), live, start)
                if self.options.strategy != "beam":
                    args += (jax.random.fold_in(rng, j),)
                cache, valid, tokens, count = self._blank(*args)
                fills[:, j], lengths[:, j] = np.asarray(tokens), np.asarray(count)
        return fills, lengths
