"""P-tuning (continuous prompts) as the official code has it: prompt tokens laid out as the official
`replace_prompt_tokens` + `PVP.encode` lay them out (real BERT vocabulary), the PromptSpell and the model's
embeddings against NumPy, cached cloze scoring with prompts, and a frozen-transformer run that moves the spell
alone, keeps optimizer state for it alone and resumes exactly after SIGTERM."""

import math
import os
import signal
import string

import flax.linen as nn
import jax
import numpy as np
import numpy_glm
import pytest
import seqio
import tensorflow as tf
from jax.sharding import PartitionSpec as P
from test_finetune import init_dir, tiny_config  # noqa: F401 - init_dir is a fixture
from test_lora import _meta, _outcome, base  # noqa: F401 - base is a fixture
from test_scoring import CONFIG, question_batch
from test_superglue import EXAMPLES, bert, literal_source, official_truncate  # noqa: F401 - bert is a fixture

from glm_jax import config as config_lib
from glm_jax import workdir as workdir_lib
from glm_jax.downstream import cloze, finetuning_job, superglue
from glm_jax.downstream.classify import superglue as classify_superglue
from glm_jax.downstream.cloze import kind as cloze_kind
from glm_jax.downstream.cloze import scoring
from glm_jax.downstream.prompts import Prompts, spread
from glm_jax.downstream.seq2seq import layout as seq2seq_layout
from glm_jax.downstream.superglue.text import standardize_text
from glm_jax.model import prompt
from glm_jax.model.glm import GLM, GLMConfig, init_params
from glm_jax.official import mapping
from glm_jax.training import sharding, stops, trainable
from glm_jax.training.synthetic import TOKENS
from glm_jax.training.trainer import Trainer

BASE = 40_000  # prompt token k is BASE + k (a model of 40,000 embedding rows)
PLACEHOLDER = -1  # the official `tokenizer.num_tokens`


def official_replace_prompt_tokens(parts_a, parts_b, num_prompt_tokens):
    """The official `PVP.replace_prompt_tokens` with --continuous-prompt, as written there."""
    num_pos = sum(part is None for parts in (parts_a, parts_b) for part in parts)
    avg_prompt_tokens = math.ceil(num_prompt_tokens / num_pos)
    new_parts = ([], [])
    for parts, new in zip((parts_a, parts_b), new_parts, strict=True):
        for part in parts:
            if part is None:
                if num_prompt_tokens > 0:
                    count = avg_prompt_tokens if num_prompt_tokens >= avg_prompt_tokens else num_prompt_tokens
                    new.append(count)
                    num_prompt_tokens -= count
            else:
                new.append(part)
    return new_parts


def test_spread_is_the_official_replace_prompt_tokens():
    for spots in range(1, 6):
        for tokens in range(12):
            parts_a = [None, "x"] * spots
            counts = [p for p in official_replace_prompt_tokens(parts_a, [], tokens)[0] if p != "x"]
            assert [n for n in spread(tokens, spots) if n] == counts, (tokens, spots)
    assert spread(5, 4) == [2, 2, 1, 0] and spread(0, 3) == [0, 0, 0]
    with pytest.raises(ValueError, match="prompt.tokens=2 needs prompt spots in the pattern"):
        spread(2, 0)


def _shortenable(text):
    return (text, True)


def _official_parts(task: str, p: int, ex: dict) -> tuple[list, list]:
    """The official `get_parts` of `tasks/superglue/pvp.py` (before `replace_prompt_tokens`) for the cases below."""
    mask, punc = [["MASK"]], string.punctuation
    if task == "rte":
        text_a, text_b = ex["premise"], ex["hypothesis"].rstrip(punc)
        if p == 0:
            return [None, '"', _shortenable(text_b), '" ?'], [None, *mask, ",", None, ' "', _shortenable(text_a), '"']
        return [None, _shortenable(text_a), None, " question:", _shortenable(" " + text_b), " True or False?", None,
                " answer:", *mask], []  # fmt: skip
    if task == "boolq":
        passage, question = ex["passage"], ex["question"]
        if p == 0:
            return [None, _shortenable(passage), None, " Question:", _shortenable(" " + question), "? Answer:", None,
                    *mask, "."], []  # fmt: skip
        return ["Based on the following passage", None, _shortenable(" " + question), "?", None, *mask, ".", None,
                _shortenable(" " + passage)], []  # fmt: skip
    if task == "copa":
        premise = _shortenable((" " + ex["premise"]).rstrip(punc))
        c1, c2 = ((ex[k][0].lower() + ex[k][1:]).rstrip(punc) for k in ("choice1", "choice2"))
        joiner = " because" if ex["question"] == "cause" else ", so"
        return [None, '"', c1, '" or "', c2, '"?', None, premise, joiner, None, *mask, "."], []
    if task == "wsc":
        words = ex["text"].split()
        words[ex["span2_index"]] = "*" + words[ex["span2_index"]] + "*"
        question = " Question: In the passage above, what does the pronoun '*" + ex["span2_text"] + "*' refer to?"
        return [None, _shortenable(" ".join(words)), None, question, None, " Answer:", *mask, "."], []
    if task == "multirc":
        passage = _shortenable(ex["paragraph"].rstrip().rstrip(punc))
        question = ex["question"].rstrip().rstrip(punc)
        return [None, passage, None, " " + question, "- [", *mask, "]", None, ex["answer"]], []
    raise AssertionError(task)


def _official_layout(parts, vocabulary, tokens: int, prefix: int, answer_len: int, seq_len: int) -> list[int]:
    """The official `encode` of the filled parts: pieces tokenized on their own, prompt spots as placeholders, the
    prefix first, cut by `PVP.truncate`; then `[CLS] ... [eos]`."""
    parts_a, parts_b = official_replace_prompt_tokens(*parts, tokens)

    def encode(raw):
        out = []
        for x in raw:
            x, short = x if isinstance(x, tuple) else (x, False)
            if isinstance(x, str):
                x = vocabulary.encode(x)
            elif isinstance(x, int):
                x = [PLACEHOLDER] * x
            else:
                x = [vocabulary.command_tokens.mask]
            out.append((list(x), short))
        return out

    segments = [[([PLACEHOLDER] * prefix, False), *encode(parts_a)]] + ([encode(parts_b)] if parts_b else [])
    kept = official_truncate(segments, answer_len, seq_len)
    return [vocabulary.command_tokens.cls, *kept[1:-1], vocabulary.command_tokens.eos]


# (task, pattern, prompt.tokens, prompt.prefix, seq_len): two segments (RTE 0), cuts (short seq_len), answers of
# several tokens with their own cuts (COPA, WSC), spots left empty (5 over 4: 2, 2, 1, 0).
CASES = [
    ("rte", 0, 5, 2, 40),
    ("rte", 4, 3, 0, 256),
    ("boolq", 0, 3, 0, 24),
    ("boolq", 4, 8, 1, 256),
    ("copa", 0, 5, 0, 36),
    ("wsc", 2, 4, 2, 36),
    ("multirc", 3, 2, 3, 30),
]
PLAIN = {
    "boolq": {"passage": "Barq's is an American soft drink. Its brand of root beer is notable for having caffeine."},
    "multirc": {"question": "Did Susan's sick friend recover?"},
}


@pytest.mark.parametrize("task, pattern, tokens, prefix, seq_len", CASES)
def test_layouts_equal_the_official_encode(task, pattern, tokens, prefix, seq_len, bert):  # noqa: F811
    examples = [ex | PLAIN.get(task, {}) for ex in EXAMPLES[task]]
    name = superglue.register(task, bert, source=literal_source(examples), pattern_id=pattern,
                              name=f"test_ptuning_{task}", prompts=Prompts(tokens, prefix, BASE))  # fmt: skip
    ds = seqio.get_mixture_or_task(name).get_dataset(
        {"inputs": seq_len}, split="validation", shuffle=False, trim_output_features=False
    )
    for ex, q in zip(examples, ds.as_numpy_iterator(), strict=False):
        layouts = np.split(q["inputs"], np.cumsum(q["part_a_lengths"])[:-1])
        official = _official_parts(task, pattern, {k: standardize_text(v) if isinstance(v, str) else v
                                                   for k, v in ex.items()})  # fmt: skip
        for i, n in enumerate(q["choice_lengths"]):
            ours = layouts[q["choice_part_a"][i]]
            prompts = ours[ours >= BASE]
            np.testing.assert_array_equal(prompts, BASE + np.arange(tokens + prefix))  # in row order, none cut
            expected = _official_layout(official, bert, tokens, prefix, int(n), seq_len)
            assert np.where(ours >= BASE, PLACEHOLDER, ours).tolist() == expected, (task, i)
        assert q["truncated"] == (seq_len < 256)


def test_without_prompts_the_spots_are_dropped(bert):  # noqa: F811
    ex = tf.nest.map_structure(tf.constant, EXAMPLES["rte"][0])
    pieces = superglue.make_cloze("rte", bert, 0).pattern(ex)
    plain = cloze.part_a(pieces, bert, bert.command_tokens, 256)[0].numpy()
    dropped = tuple([p for p in segment if p is not cloze.PROMPT] for segment in pieces)
    np.testing.assert_array_equal(plain, cloze.part_a(dropped, bert, bert.command_tokens, 256)[0].numpy())
    with pytest.raises(ValueError, match="needs prompt spots in the pattern"):
        superglue.register("record", bert, source=literal_source(EXAMPLES["record"]), name="test_ptuning_record",
                           prompts=Prompts(2, 0, BASE))  # fmt: skip
        next(seqio.get_mixture_or_task("test_ptuning_record").get_dataset({"inputs": 256}, split="validation"))


def test_classifier_and_seq2seq_rows(bert):  # noqa: F811
    """Classifier rows: the prefix, then a spot at the start of text_a and of text_b; seq2seq: the prefix only."""
    name = classify_superglue.register("rte", bert, source=literal_source(EXAMPLES["rte"]),
                                       name="test_ptuning_rte_classify", prompts=Prompts(3, 1, BASE))  # fmt: skip
    (q,) = seqio.get_mixture_or_task(name).get_dataset({"inputs": 256}, split="validation", shuffle=False)
    ex, t = EXAMPLES["rte"][0], bert.command_tokens
    a, b = bert.encode(ex["premise"]), bert.encode(ex["hypothesis"])
    expected = [t.cls, BASE, BASE + 1, BASE + 2, *a, t.sep, BASE + 3, *b, t.eos]  # spread(3, 2) = 2, 1
    assert q["inputs"].numpy().tolist() == expected
    prompt_ids = bert.encode(seq2seq_layout.PROMPT)
    part_a = seq2seq_layout.summary_part_a(tf.constant("a cat sat"), prompt_ids, bert, t, t.mask, 12, prefix=(7, 8))
    assert part_a.numpy().tolist() == [t.cls, 7, 8, t.mask, *prompt_ids, *bert.encode(" a cat sat")][:12]


def _numpy_spell(params, func: str) -> np.ndarray:
    """The official `PromptSpell.forward` in NumPy (float64), from PyTorch-named parameters."""
    sd = {k: np.asarray(v, np.float64) for k, v in prompt.to_official(params).items()}
    x = sd["spell_embeddings.weight"]
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    if func == "lstm":
        for layer in range(2):
            outputs = []
            for suffix, order in (("", range(len(x))), ("_reverse", reversed(range(len(x))))):
                w = {n: sd[f"lstm_head.{n}_l{layer}{suffix}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                h = c = np.zeros(w["weight_hh"].shape[1])
                out = [None] * len(x)
                for step in order:
                    i, f, g, o = np.split(
                        w["weight_ih"] @ x[step] + w["bias_ih"] + w["weight_hh"] @ h + w["bias_hh"], 4
                    )
                    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                    h = sigmoid(o) * np.tanh(c)
                    out[step] = h
                outputs.append(np.stack(out))
            x = np.concatenate(outputs, axis=-1)
    if func in ("lstm", "mlp"):
        x = np.maximum(x @ sd["mlp_head.0.weight"].T + sd["mlp_head.0.bias"], 0)
        x = x @ sd["mlp_head.2.weight"].T + sd["mlp_head.2.bias"]
    return x


@pytest.mark.parametrize("func", prompt.PROMPT_FUNCS)
def test_prompt_spell_equals_numpy(func):
    config = prompt.PromptConfig(length=5, func=func)
    spell = prompt.PromptSpell(config, hidden=12)
    params = nn.unbox(spell.init(jax.random.key(func == "mlp"))["params"])
    if func == "lstm":  # PyTorch's names and shapes: [4h, in] with gates i, f, g, o; layer 1 reads both directions
        assert params["lstm_head"]["weight_ih_l1_reverse"].shape == (48, 24)
        assert params["mlp_head_0"]["weight"].shape == (12, 24)
    np.testing.assert_allclose(spell.apply({"params": params}), _numpy_spell(params, func), atol=1e-5)


def test_prompt_embeddings_and_logits_equal_the_official_forward():
    """Prompt ids take the spell's rows, other ids their word embeddings: the logits are the NumPy official model's
    with `embeddings[prompt_pos] = prompt_spell()`; a row without prompt ids is the model without prompts."""
    config = GLMConfig(**{**CONFIG.__dict__, "prompt": prompt.PromptConfig(length=3, func="mlp")})
    params = nn.unbox(init_params(config, jax.random.key(0), 16))
    rng = np.random.default_rng(0)
    length, sep = 12, 9
    inputs = rng.integers(11, 64, (2, length)).astype(np.int32)
    inputs[0, [1, 4, 5]] = config.vocab_size + np.arange(3)  # prompt tokens 0, 1, 2
    inputs[:, 0], inputs[:, 7] = TOKENS.cls, TOKENS.mask
    batch = {"inputs": inputs, "segment_ids": (np.arange(length) < sep).astype(np.int32)[None].repeat(2, 0),
             "span_ids": np.zeros_like(inputs)}  # fmt: skip
    batch["inputs"][:, sep:] = 0
    forward = jax.jit(lambda config, params: GLM(config).apply({"params": params}, batch), static_argnums=0)
    logits = np.asarray(forward(config, params))

    spell = np.asarray(prompt.PromptSpell(config.prompt, config.hidden).apply({"params": params[prompt.SPELL]}))
    sd = mapping.to_official({k: v for k, v in params.items() if k != prompt.SPELL})
    sd["word_embeddings.weight"] = np.concatenate([sd["word_embeddings.weight"], spell])  # the placeholder rows
    positions = np.stack([np.arange(length)] * 2)[:, None].repeat(2, 1)
    positions[:, 1] = 0
    expected = numpy_glm.forward(sd, config.heads, inputs, positions, [sep, sep])[..., : config.vocab_size]
    np.testing.assert_allclose(logits[:, :sep], expected[:, :sep], atol=2e-5)
    plain = forward(CONFIG, {k: v for k, v in params.items() if k != prompt.SPELL})
    np.testing.assert_array_equal(logits[1], np.asarray(plain)[1])


def _prompted(batch: dict, vocab_size: int) -> dict:
    """Question batches (`question_batch`, layouts of 6 or more tokens) with prompt tokens 0, 1 and 2 after each
    layout's [CLS], after its [MASK] and before its eos."""
    for i, layout in np.ndindex(batch["inputs"].shape[:2]):
        row, length = batch["inputs"][i, layout], batch["segment_ids"][i, layout].sum()
        if length:
            row[[1, np.nonzero(row == TOKENS.mask)[0][0] + 1, length - 2]] = vocab_size + np.arange(3)
    return batch


def test_cached_scores_with_prompts_equal_full_forward():
    config = GLMConfig(**{**CONFIG.__dict__, "prompt": prompt.PromptConfig(length=4, func="mlp")})
    params = nn.unbox(init_params(config, jax.random.key(1), 16))
    layouts = [[0, 1, 2], [1, 0], [0]]
    batch = _prompted(question_batch(np.random.default_rng(3), [12, 14, 11], [[3, 1, 4], [2, 2], [1]], 5, layouts),
                      config.vocab_size)  # fmt: skip
    cached_scores = jax.jit(scoring.choice_log_probs, static_argnums=(0, 3))
    cached = cached_scores(config, params, batch, TOKENS.sop)
    full = jax.jit(scoring.full_forward_log_probs, static_argnums=(0, 3))(config, params, batch, TOKENS.sop)
    np.testing.assert_allclose(cached, full, atol=1e-5)
    plain = cached_scores(CONFIG, {k: v for k, v in params.items() if k != prompt.SPELL},
                          batch | {"inputs": np.minimum(batch["inputs"], 63)}, TOKENS.sop)  # fmt: skip
    assert np.abs(np.asarray(plain) - np.asarray(cached)).max() > 1e-3  # the prompts matter


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (tests/conftest.py sets XLA_FLAGS)")
def test_a_ptuning_step_is_the_same_on_a_mesh():
    """The spell's matrices split over fsdp and tensor ([mlp, embed]): on the (2, 2, 2) mesh a frozen-transformer
    step gives the loss and spell of one device, and leaves the transformer as it was."""
    c = tiny_config()
    c.model.update(num_layers=2, hidden=32, heads=4, max_len=40, dropout=0.0, attention_dropout=0.0)
    c.prompt.update(tokens=3, freeze_transformer=True)
    c.optimizer.warmup_fraction, c.train.steps = 0.0, 10  # the first step at the peak rate
    glm_config = GLMConfig(**{**CONFIG.__dict__, "prompt": prompt.PromptConfig(length=3, func="lstm")})
    batch = _prompted(question_batch(np.random.default_rng(1), [9, 14, 6, 20, 7, 11, 8, 16], [[3, 1], [2, 2], [1],
                      [5], [2, 3], [4], [1, 1], [2]], 5), glm_config.vocab_size)  # fmt: skip
    batch["label"] = np.array([1, 0, 0, 0, 1, 0, 1, -1], np.int32)
    results = []
    for mesh_shape in ((1, 1, 1), (2, 2, 2)):
        devices = jax.devices()[: int(np.prod(mesh_shape))]
        objective = cloze_kind.Objective(TOKENS.sop)
        trainer = Trainer(c, glm_config, sharding.make_mesh(*mesh_shape, devices=devices), objective=objective)
        state = trainer.init_state(0)
        before = jax.device_get(state.params)
        state, metrics = trainer.train_step(state, trainer.device_batch(batch))
        results.append((float(metrics["loss"]), jax.device_get(state.params)))
        assert trainer.state_shardings.params[prompt.SPELL]["lstm_head"]["weight_ih_l1"].spec == P("tensor", "fsdp")
    tuned = trainable.flat(results[1][1])
    for path, x in trainable.flat(before).items():
        assert np.array_equal(tuned[path], x) == (path[0] != prompt.SPELL), path
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), results[1][1], results[0][1])


def test_freeze_transformer_is_what_auto_trains():
    """The official --freeze-transformer: word embeddings and transformer frozen, the spell (and a head, LoRA
    adapters, the first --tune-prefix-layers layers) trained; bad settings name their key."""
    auto = lambda **kw: trainable.Selection("auto", **kw).spec  # noqa: E731
    assert auto(freeze_transformer=True) == "prompt" and auto() == "all"
    assert auto(lora_rank=4, freeze_transformer=True, tune_prefix_layers=2) == "lora,prompt,layers_0/*,layers_1/*"
    params = {"prompt_spell": {"spell_embeddings": np.zeros((2, 4))}, "layers_0": {"bias": np.zeros(4)},
              "layers_1": {"bias": np.zeros(4)}, "classifier": {"bias": np.zeros(2)}}  # fmt: skip
    selection = trainable.Selection("auto", always=("classifier",), freeze_transformer=True, tune_prefix_layers=1)
    assert sorted(trainable.flat(selection.split(params)[0])) == [
        ("classifier", "bias"), ("layers_0", "bias"), ("prompt_spell", "spell_embeddings")
    ]  # fmt: skip
    with pytest.raises(ValueError, match="'prompt' matches no prompt spell: set prompt.tokens or prompt.prefix > 0"):
        trainable.Selection("prompt").check({"layers_0": params["layers_0"]})
    for key, value, message in [
        ("func", "gru", "prompt.func must be one of"),
        ("tune_prefix_layers", 1, "prompt.tune_prefix_layers needs prompt.freeze_transformer"),
        ("tokens", -1, "prompt.tokens and prompt.prefix must be >= 0"),
    ]:
        c = tiny_config()
        c.model.num_layers = 2
        c.prompt[key] = value
        with pytest.raises(ValueError, match=message):
            config_lib.validate(c, 1)


EPOCHS = 2  # 3 steps each (24 questions of 8)


def _ptuning_config():
    c = tiny_config()
    c.finetune.epochs = EPOCHS
    c.prompt.update(prefix=3, func="lstm", init=True, freeze_transformer=True)
    c.model.dropout = 0.1
    c.optimizer.peak_lr = 1e-2
    c.train.update(log_every=1, checkpoint_every=2)
    return c


@pytest.fixture(scope="module")
def run(base, tmp_path_factory):  # noqa: F811
    workdir = tmp_path_factory.mktemp("ptuning") / "run"
    finetuning_job.run(_ptuning_config(), str(base), str(workdir))
    return workdir


def test_a_frozen_transformer_run_moves_the_spell_alone(base, run):  # noqa: F811
    meta = _meta(run / "checkpoints" / str(3 * EPOCHS))
    stored = meta["checksums"]["params"]
    assert stored and all("['prompt_spell']" in name for name in stored)
    moments = [name for name in meta["checksums"]["opt_state"] if "prompt_spell" in name]
    assert moments and len(moments) == len(meta["checksums"]["opt_state"]) - 2 and len(moments) == 2 * len(stored)
    assert all("['prompt_spell']" not in name for name in meta["base"]["checksums"])
    model, start = workdir_lib.load(str(run)), workdir_lib.load(str(base))
    tuned, pretrained = trainable.flat(model.params), trainable.flat(start.params)
    assert {p for p in tuned if p[0] != prompt.SPELL} == set(pretrained)
    for path, x in pretrained.items():
        np.testing.assert_array_equal(tuned[path], x, err_msg=str(path))  # every frozen array, bitwise
    # prompt.init: word embeddings of random ids mixed with the verbalizer's ("bad", "good"), drawn from train.seed
    tokens = model.vocabulary.encode("bad") + model.vocabulary.encode("good")
    words = np.asarray(pretrained["word_embeddings", "embedding"])
    init = prompt.init_embedding(words, 3, tokens, 0)
    spell = np.asarray(tuned[prompt.SPELL, "spell_embeddings"])
    assert spell.shape == init.shape and not np.allclose(spell, init)  # started there, then trained
    assert np.abs(spell - init).max() < 0.1  # 6 Adam steps of lr 1e-2 at most; a fresh N(0, 1) start is ~1 away
    scores = finetuning_job.run(None, "", str(run), eval_only=True)  # best/: the spell, the rest from the base
    assert scores["accuracy"] == max(r["eval_accuracy"] for r in _outcome(run)[0] if "eval_accuracy" in r)


def test_sigterm_then_resume_is_exact(base, run, tmp_path, monkeypatch):  # noqa: F811
    evaluate = finetuning_job.evaluate

    def evaluate_then_stop(c, kind, params, data, workdir, step):  # SIGTERM in the evaluation after step 3
        scores = evaluate(c, kind, params, data, workdir, step)
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return scores

    monkeypatch.setattr(finetuning_job, "evaluate", evaluate_then_stop)
    with pytest.raises(stops.Preempted, match="stopped after step 4"):
        finetuning_job.run(_ptuning_config(), str(base), str(tmp_path / "run"))
    finetuning_job.run(_ptuning_config(), str(base), str(tmp_path / "run"))
    assert _outcome(tmp_path / "run") == _outcome(run)  # losses, evaluations, predictions, best/: bitwise
