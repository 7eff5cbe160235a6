"""KV-cache decoding: cached logits equal the full forward; greedy, beam and sampling behave exactly."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glm_jax import config as config_lib
from glm_jax import workdir
from glm_jax.contract import CommandTokens
from glm_jax.downstream import decoding
from glm_jax.downstream.decoding import DecodeOptions, Decoder, Prompts
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.training import sharding

T = CommandTokens(pad=0, eos=1, unk=2, cls=3, sep=4, mask=5, smask=6, gmask=7, sop=8, eop=9, dblock=10)
CONFIG = GLMConfig(vocab_size=64, num_layers=2, hidden=32, heads=4, max_len=40, blank_markers=T.blank_markers)
# Three prompts: two blanks, one blank, none (continued through an appended [gMASK]).
PROMPTS = [[20, T.mask, 21, 22, T.smask, 23], [30, 31, T.mask, 32], [40, 41, 42]]


def _params(config=CONFIG, seed=0):
    return nn.unbox(init_params(config, jax.random.key(seed), 16))


@pytest.fixture(scope="module")
def params():
    """Random weights with varied greedy fills, where eop takes over the rarest greedy token."""
    params = jax.tree_util.tree_map_with_path(  # larger kernels: fills that do not just repeat a token
        lambda path, x: x * 8.0 if path[-1].key == "kernel" else x, _params()
    )
    fills, lengths = Decoder(CONFIG, T, DecodeOptions(max_new_tokens=6)).fill(params, Prompts(PROMPTS, T))
    tokens = [f[:n] for row, ns in zip(fills, lengths, strict=True) for f, n in zip(row, ns, strict=True)]
    counts = np.bincount(np.concatenate(tokens), minlength=64).astype(float)
    rarest = int(np.where(counts > 0, counts, np.inf).argmin())
    words = params["word_embeddings"]["embedding"]
    params["word_embeddings"]["embedding"] = words.at[T.eop].set(words[rarest] * 1.05)
    return params


def contract(prompts: Prompts, fills, lengths):
    """The contract fields of prompts with their fills as Part B spans (blank order), one row each."""
    rows = []
    for row, fill, length in zip(prompts.rows, fills, lengths, strict=True):
        part_b = [[T.sop, *fill[j, : length[j]]] for j in range(len([t for t in row if t in T.blank_markers]))]
        inputs = row + [t for span in part_b for t in span]
        span_ids = [0] * len(row) + [j + 1 for j, span in enumerate(part_b) for _ in span]
        rows.append((inputs, span_ids))
    width = max(len(r[0]) for r in rows)
    pad = lambda xs: xs + [0] * (width - len(xs))  # noqa: E731
    return {
        "inputs": np.array([pad(r[0]) for r in rows], np.int32),
        "segment_ids": np.array([pad([1] * len(r[0])) for r in rows], np.int32),
        "span_ids": np.array([pad(r[1]) for r in rows], np.int32),
    }


# The scanned model, and the position schemes of the paper's ablations (no block position, sentinel positions).
VARIANTS = [
    {"scan_layers": False},
    {"scan_layers": True},
    {"block_positions": "constant"},
    {"sentinel_positions": True},
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_logits_equal_the_full_forward(variant):
    config = GLMConfig(**{**CONFIG.__dict__, **variant})
    params = _params(config, seed=1)
    prompts = Prompts(PROMPTS[:2], T)
    rng = np.random.default_rng(0)
    fills = rng.integers(11, 64, (2, 2, 5)).astype(np.int32)
    lengths = np.array([[3, 5], [4, 0]])
    full = np.asarray(GLM(config).apply({"params": params}, contract(prompts, fills, lengths)))

    region = 6
    slots = prompts.length + 2 * region
    logits_a, cache, valid = decoding.prefill(config, params, prompts.inputs, prompts.segment_ids, slots)
    offsets = prompts.offsets_array()
    # Blank 1 in one call of 6 tokens; blank 2 token by token.
    span = np.concatenate([np.full((2, 1), T.sop), fills[:, 0]], axis=1)
    live = np.arange(6)[None] <= lengths[:, :1]
    logits_b1, cache, valid = decoding.extend(config, params, cache, valid, span, offsets[:, 0], prompts.length, live)
    steps = []
    for t in range(6):
        token = np.array([T.sop] * 2 if t == 0 else fills[:, 1, t - 1], np.int32)
        live = (np.array([1, 0]) > 0) & (t <= lengths[:, 1])
        out, cache, valid = decoding.extend(config, params, cache, valid, token[:, None], offsets[:, 1],
                                            prompts.length + region + t, live[:, None], block_start=t + 1)  # fmt: skip
        steps.append(np.asarray(out)[:, 0])
    for b in range(2):
        a = len(prompts.rows[b])
        np.testing.assert_allclose(np.asarray(logits_a)[b, :a], full[b, :a], atol=1e-5)
        n1 = lengths[b, 0] + 1
        np.testing.assert_allclose(np.asarray(logits_b1)[b, :n1], full[b, a : a + n1], atol=1e-5)
        if b == 0:
            n2 = lengths[b, 1] + 1
            np.testing.assert_allclose(np.stack(steps)[:n2, b], full[b, a + n1 : a + n1 + n2], atol=1e-5)


def test_greedy_equals_repeated_full_forward_argmax(params):
    prompts = Prompts(PROMPTS, T)
    fills, lengths = Decoder(CONFIG, T, DecodeOptions(max_new_tokens=6)).fill(params, prompts)
    batch = contract(prompts, fills, lengths)
    predicted = np.asarray(GLM(CONFIG).apply({"params": params}, batch)).argmax(-1)
    ended_at_eop = 0
    for b, row in enumerate(prompts.rows):
        start = len(row)
        for j in range(len(prompts.blank_offsets[b])):
            n = lengths[b, j]
            expected = predicted[b, start : start + n + 1]
            np.testing.assert_array_equal(expected[:n], fills[b, j, :n])  # each token is the argmax
            if n < 6:
                assert expected[n] == T.eop  # and the fill stopped where eop was the argmax
                ended_at_eop += 1
            start += n + 1
    assert ended_at_eop >= 1 and ((lengths > 0) & (lengths < 6)).any(), lengths
    assert [len(b) for b in prompts.blank_offsets] == [2, 1, 1]  # every blank, the appended [gMASK] too


def test_later_blanks_see_earlier_fills(params):
    """Changing what fills blank 1 (teacher-forced) changes the logits of blank 2."""
    prompts = Prompts(PROMPTS[:1], T)
    fills = np.array([[[11, 12, 13], [14, 15, 16]]], np.int32)
    a = np.asarray(GLM(CONFIG).apply({"params": params}, contract(prompts, fills, np.array([[3, 3]]))))
    fills[0, 0, 1] = 40
    b = np.asarray(GLM(CONFIG).apply({"params": params}, contract(prompts, fills, np.array([[3, 3]]))))
    assert np.abs(a[0, -4:] - b[0, -4:]).max() > 1e-4


def test_one_beam_equals_greedy(params):
    prompts = Prompts(PROMPTS, T)
    greedy = Decoder(CONFIG, T, DecodeOptions(max_new_tokens=6)).fill(params, prompts)
    beam = Decoder(CONFIG, T, DecodeOptions(strategy="beam", num_beams=1, max_new_tokens=6)).fill(params, prompts)
    np.testing.assert_array_equal(beam[1], greedy[1])
    for b, j in itertools.product(range(3), range(2)):
        np.testing.assert_array_equal(beam[0][b, j, : beam[1][b, j]], greedy[0][b, j, : greedy[1][b, j]])


def test_beam_search_finds_the_best_fill_exhaustively():
    """With no length penalty and more beams than fills of <= 2 tokens, beam search is exact."""
    config = GLMConfig(**{**CONFIG.__dict__, "vocab_size": 16})
    params = _params(config, seed=2)
    prompts = Prompts([[11, T.mask, 12]], T)
    options = DecodeOptions(strategy="beam", num_beams=256, max_new_tokens=2, length_penalty=0.0)
    fills, lengths = Decoder(config, T, options).fill(params, prompts)

    def log_prob(fill):
        batch = contract(prompts, np.array([[list(fill) + [0] * (2 - len(fill))]]), np.array([[len(fill)]]))
        log_p = np.asarray(jax.nn.log_softmax(GLM(config).apply({"params": params}, batch)))[0]
        a = len(prompts.rows[0])
        targets = list(fill) + ([T.eop] if len(fill) < 2 else [])  # at the limit the fill ends without eop
        return sum(log_p[a + i, t] for i, t in enumerate(targets))

    candidates = [()] + [(a,) for a in range(16) if a != T.eop]
    candidates += [(a, b) for a in range(16) for b in range(16) if T.eop not in (a, b)]
    best = max(candidates, key=log_prob)
    assert tuple(fills[0, 0, : lengths[0, 0]]) == best


def test_sampling_repeats_with_its_seed(params):
    prompts = Prompts(PROMPTS, T)
    run = lambda seed: Decoder(  # noqa: E731
        CONFIG, T, DecodeOptions(strategy="sample", temperature=1.5, top_k=20, top_p=0.95, max_new_tokens=6, seed=seed)
    ).fill(params, prompts)
    first, again, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_min_new_tokens_and_limit(params):
    prompts = Prompts(PROMPTS, T)
    fills, lengths = Decoder(CONFIG, T, DecodeOptions(max_new_tokens=4, min_new_tokens=3)).fill(params, prompts)
    live = np.array([[1, 1], [1, 0], [1, 0]], bool)
    assert np.all(lengths[live] >= 3) and np.all(lengths <= 4) and np.all(lengths[~live] == 0)
    assert not np.any(fills == T.eop)


def test_banned_ngrams_exact():
    history = jnp.array([[5, 6, 7, 5, 6, 0], [1, 2, 1, 2, 1, 0]], jnp.int32)
    banned = np.asarray(decoding.banned_ngrams(history, jnp.array(5), 3, 10))
    # Row 0 ends "5 6": the trigram "5 6 7" exists, so 7 is banned. Row 1 ends "2 1": "2 1 2" bans 2.
    assert np.flatnonzero(banned[0]).tolist() == [7] and np.flatnonzero(banned[1]).tolist() == [2]
    assert not np.asarray(decoding.banned_ngrams(history, jnp.array(2), 3, 10)).any()


def test_top_k_and_top_p_keep_only_the_head():
    log_probs = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
    keys = jax.random.key(0)
    top_k = np.asarray(decoding.sample(keys, log_probs, DecodeOptions(strategy="sample", top_k=2)))
    top_p = np.asarray(decoding.sample(keys, log_probs, DecodeOptions(strategy="sample", top_p=0.7)))
    assert set(top_k.tolist()) == {0, 1} and set(top_p.tolist()) == {0, 1}
    assert abs((top_k == 0).mean() - 0.5 / 0.8) < 0.03


@pytest.mark.parametrize(
    "option,message",
    [({"strategy": "nucleus"}, "strategy"), ({"max_new_tokens": 40}, "max_len"), ({"top_p": 0.0}, "top_p")],
)
def test_bad_options_are_named(option, message):
    with pytest.raises(ValueError, match=message):
        Decoder(CONFIG, T, DecodeOptions(**option))


def test_decoding_on_a_sharded_mesh_equals_one_device():
    """Parameters sharded over (data 2, fsdp 2, tensor 2) of 8 devices: the same fills as unsharded."""
    c = config_lib.load_config_file("configs/glm_tiny.py")
    c.model.num_layers, c.model.hidden, c.model.heads, c.data.seq_len = 2, 32, 4, 64
    trainer, vocabulary = workdir.trainer_for(c, sharding.make_mesh(2, 2, 2))
    tokens = vocabulary.command_tokens
    params = trainer.init_state(0).params
    assert len(params["word_embeddings"]["embedding"].sharding.device_set) == 8
    prompts = Prompts([[20, tokens.mask, 21, tokens.mask], [30, 31], [40, tokens.mask], [50, 51, 52]], tokens)
    for options in (DecodeOptions(max_new_tokens=5), DecodeOptions(strategy="beam", num_beams=3, max_new_tokens=5)):
        sharded = Decoder(trainer.glm_config, tokens, options, trainer.partitioning).fill(params, prompts)
        local = Decoder(trainer.glm_config, tokens, options).fill(jax.device_get(params), prompts)
        np.testing.assert_array_equal(sharded[1], local[1])
        np.testing.assert_array_equal(sharded[0], local[0])
