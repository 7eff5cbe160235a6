"""Text infilling (seq2seq/blanks.py): the official BlankLMDataset layout token by token, the blanking ratio, the
filled text and its BLEU, the sources (jsonl, TFDS, the blank_lm files, the demo) and one tiny fine-tuning."""

import functools
import json
import random
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sacrebleu
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import ROOT
from test_finetune import init_dir, read_jsonl  # noqa: F401  (the tiny --init workdir fixture)

from glm_jax.contract import TASK_FIELDS
from glm_jax.data import pipeline, vocab
from glm_jax.data.wordpiece import BertVocabulary
from glm_jax.downstream import finetuning_job, generation_metrics, seq2seq
from glm_jax.downstream.demos import infill
from glm_jax.downstream.seq2seq import blank_texts, blanks
from glm_jax.model.layout import layout

BERT_VOCAB = ROOT.parent / "shared" / "vocab" / "bert-base-uncased-vocab.txt"
SP = vocab.default_vocabulary()


@pytest.fixture(scope="module")
def bert():
    if not BERT_VOCAB.exists():
        pytest.skip(f"the real BERT vocabulary {BERT_VOCAB} is absent")
    return BertVocabulary(str(BERT_VOCAB))


# --- The official procedure, written out (tasks/seq2seq/dataset.py, BlankLMDataset) --------------------------------


def official_mask_text(text: str, chosen: list[int]) -> tuple[str, list[str]]:
    """`mask_text` with its `random.sample` given as `chosen`: (Part A text, the text of each blank)."""
    source, answers = [], []
    for i, word in enumerate(text.split()):
        if i not in chosen:
            source.append(word)
        elif i - 1 in chosen:
            answers[-1] += " " + word
        else:
            source.append("[MASK]")
            answers.append(" " + word)
    return "".join(" " + word for word in source), answers


def official_encode(text: str, vocabulary) -> list[int]:
    """The official `Tokenizer.EncodeAsIds`: the text split at command-token texts, each piece encoded alone."""
    tokens = vocabulary.command_tokens
    commands = {"[MASK]": tokens.mask, "[UNK]": tokens.unk}
    ids = []
    for piece in re.split(r"(\[MASK\]|\[UNK\])", text):
        ids += [commands[piece]] if piece in commands else vocabulary.encode(piece) if piece.strip() else []
    return ids


def official_example(text: str, chosen: list[int], vocabulary, max_src: int, ratio: float) -> list[list[int]]:
    """`__getitem__` of a training example: tokens, targets, loss mask, positions and block positions, each padded
    or cut to `max_src + int(max_src * ratio)`."""
    tokens = vocabulary.command_tokens
    source, answers = official_mask_text(text, chosen)
    part_a = (official_encode(" " + source, vocabulary) + [tokens.pad] * max_src)[:max_src]
    fields = [list(part_a), [0] * max_src, [0] * max_src, list(range(max_src)), [0] * max_src]
    blank_offsets = [i for i, token in enumerate(part_a) if token == tokens.mask]
    for answer, offset in zip(answers, blank_offsets, strict=False):  # blanks past the cut have no span
        ids = official_encode(" " + answer, vocabulary)
        n = len(ids) + 1
        parts = ([tokens.sop, *ids], [*ids, tokens.eop], [1] * n, [offset] * n, list(range(1, n + 1)))
        for field, part in zip(fields, parts, strict=True):
            field += part
    length = max_src + int(max_src * ratio)
    return [(field + [0] * length)[:length] for field in fields]


def glm_example(text: str, chosen: list[int], vocabulary, max_src: int, ratio: float, unknown: str = "") -> dict:
    """Our example of the same text and blanks, Part A padded as the official (`pad_part_a`)."""
    words = blanks.split_words(text)
    blanked = tf.constant(np.isin(np.arange(len(text.split())), chosen))
    ex = blanks.blank_example(words, blanked, vocabulary, source_len=max_src, target_len=int(max_src * ratio),
                              prefix=blanks.run_prefix(vocabulary), unknown=unknown)  # fmt: skip
    ex = seq2seq.pad_part_a(ex, max_src, vocabulary.command_tokens.pad)
    return {k: ex[k].numpy() for k in (*TASK_FIELDS, "reference")}


# --- Layout --------------------------------------------------------------------------------------------------------


def test_the_worked_example_of_the_docstring(bert):
    ex = glm_example("the cat sat on the mat", [1, 2, 4], bert, max_src=16, ratio=1.0)
    t, ids = bert.command_tokens, {w: bert.encode(w)[0] for w in "the cat sat on mat".split()}
    part_a = [ids["the"], t.mask, ids["on"], t.mask, ids["mat"]] + [t.pad] * 11
    assert ex["inputs"].tolist() == part_a + [t.sop, ids["cat"], ids["sat"], t.sop, ids["the"]]
    assert ex["targets"].tolist() == [0] * 16 + [ids["cat"], ids["sat"], t.eop, ids["the"], t.eop]
    assert ex["loss_weights"].tolist() == [0] * 16 + [1] * 5
    assert ex["span_ids"].tolist() == [0] * 16 + [1, 1, 1, 2, 2]
    assert ex["reference"] == b"the cat sat on the mat"


YAHOO = [
    "how do i get rid of a cold ? drink lots of water and get plenty of sleep , it works for me .",
    "what 's the best way to learn _UNK ? practice every day and do n't give up .",
    "photosynthesis converts electromagnetic radiation into chemical energy within chloroplasts of leaves",
    " ".join(f"word{i} appears here" for i in range(30)),  # 90 words: Part A and Part B are cut
]


@pytest.mark.parametrize("max_src,ratio", [(64, 0.1), (64, 0.3), (24, 0.5)])
def test_examples_equal_the_official_token_by_token(bert, max_src, ratio):
    """Inputs, targets, loss weights, span ids, positions and block positions of our examples equal the official
    BlankLMDataset's for the same texts and blanks (its own `random.sample` draws), with its cuts: Part A of
    max_src tokens, Part B of int(max_src * ratio); the Yahoo files' `_UNK` as the unknown token."""
    cuts = set()
    for seed, raw in enumerate(YAHOO):
        text = raw.replace("_UNK", "[UNK]")  # the official blanklm_detokenize
        n = len(text.split())
        chosen = sorted(random.Random(seed).sample(range(n), int(n * ratio)))
        if not chosen:
            continue
        tokens, targets, loss_mask, positions, blocks = official_example(text, chosen, bert, max_src, ratio)
        ours = glm_example(text, chosen, bert, max_src, ratio, unknown="[UNK]")
        length = len(tokens)
        for name, official in (("inputs", tokens), ("targets", targets), ("loss_weights", loss_mask)):
            assert ours[name].tolist() + [0] * (length - len(ours[name])) == official, (raw, name)
        offsets = [i for i, token in enumerate(tokens[:max_src]) if token == bert.command_tokens.mask]
        cuts |= {"blanks" if len(offsets) < len(official_mask_text(text, chosen)[1]) else "", "part b" * loss_mask[-1]}
        part_b = zip(positions[max_src:], loss_mask[max_src:], strict=True)
        span_ids = [0] * max_src + [offsets.index(p) + 1 if w else 0 for p, w in part_b]
        assert ours["span_ids"].tolist() + [0] * (length - len(ours["span_ids"])) == span_ids
        real = len(ours["inputs"])
        batch = {k: jnp.asarray([ours[k].tolist() + [0] * (length - real)]) for k in ("inputs", "span_ids")}
        batch["segment_ids"] = jnp.asarray([[1] * real + [0] * (length - real)])
        got = jax.jit(layout, static_argnums=1)(batch, bert.command_tokens.blank_markers)
        assert got.positions[0, :real].tolist() == positions[:real]
        assert got.block_positions[0, :real].tolist() == blocks[:real]
        if "_UNK" in raw:
            assert bert.command_tokens.unk in ours["inputs"].tolist()
    assert {"blanks", "part b"} <= cuts  # blanks past the end of Part A, a Part B that fills its room


def test_blanks_past_the_cut_are_dropped_and_part_b_is_cut():
    """Default vocabulary (runs encoded without a leading space): of "a b c d e f" with b and e blanked, Part A cut
    to 3 tokens keeps one blank; Part B cut to 1 token loses that span's eop."""
    words = blanks.split_words("a b c d e f")
    blanked = tf.constant([False, True, False, False, True, False])
    assert blanks.run_prefix(SP) == ""
    ex = blanks.blank_example(words, blanked, SP, source_len=3, target_len=1, prefix="")
    t, a, b, c = SP.command_tokens, *(SP.encode(w)[0] for w in "abc")
    assert ex["part_a"].numpy().tolist() == [a, t.mask, c]
    assert ex["inputs"].numpy().tolist() == [a, t.mask, c, t.sop]
    assert ex["targets"].numpy().tolist() == [0, 0, 0, b]
    assert ex["span_ids"].numpy().tolist() == [0, 0, 0, 1]


# --- The ratio -----------------------------------------------------------------------------------------------------


def test_words_are_split_as_python_splits_them():
    text = "  a\u00a0b\u3000c\x0bd\x1ce\x85f\u2028g\t\nh  "
    assert [w.decode() for w in blanks.split_words(text).numpy()] == text.split()


def test_exactly_int_n_times_ratio_words_a_uniform_subset():
    for n, ratio in [(10, 0.3), (10, 0.7), (30, 0.1), (7, 0.5), (3, 0.1), (100, 0.2), (1, 1.0), (0, 0.5)]:
        assert int(blanks.choose_words(n, ratio, [n, 1]).numpy().sum()) == int(n * ratio), (n, ratio)
    draws = np.stack([blanks.choose_words(20, 0.25, [seed, 7]).numpy() for seed in range(400)])
    assert (draws.sum(axis=1) == 5).all()
    assert np.abs(draws.mean(axis=0) - 0.25).max() < 0.1  # 4.6 standard deviations of 400 draws


def test_the_share_of_blanked_tokens_is_near_the_ratio():
    """3,000 random words of 1 to 3 tokens, 30% blanked: 30% of the text's tokens are in the blanks, within 2%."""
    rng = np.random.default_rng(0)
    vocabulary = ["the", "module", "return", "photosynthesis", "x", "value", "iterator", "of", "callable"]
    words = tf.constant(rng.choice(vocabulary, 3000))
    blank = functools.partial(blanks.blank_example, vocabulary=SP, source_len=10**5, target_len=10**5, prefix="")
    ex = tf.function(tf.autograph.experimental.do_not_convert(blank))(words, blanks.choose_words(3000, 0.3, [5, 5]))
    spans = int((ex["part_a"].numpy() == SP.command_tokens.mask).sum())
    blanked_tokens = len(ex["inputs"]) - len(ex["part_a"]) - spans
    kept_tokens = len(ex["part_a"]) - spans
    assert abs(blanked_tokens / (blanked_tokens + kept_tokens) - 0.3) < 0.02
    assert spans == int(ex["span_ids"].numpy().max())


# --- The filled text and its BLEU ----------------------------------------------------------------------------------


def gold_fills(ex) -> tuple[list[list[int]], list[int]]:
    """Each blank's answer tokens (its Part B targets without eop)."""
    spans, targets = ex["span_ids"], ex["targets"]
    fills = [targets[(spans == s)][:-1].tolist() for s in range(1, int(spans.max()) + 1)]
    return fills, [len(f) for f in fills]


def demo_examples(ratio: float, count: int) -> list[dict]:
    task = blank_texts.register(SP, "demo", ratio=ratio, source_len=200, target_len=200, name="test_demo_blank")
    examples = pipeline.task_examples(task, "validation", None, seed=blanks.EVAL_SEED, trim=False)
    return list(examples.take(count).as_numpy_iterator())


def test_a_perfect_fill_scores_100_and_an_imperfect_one_as_sacrebleu():
    examples = demo_examples(0.3, 6)
    references = [ex["reference"].decode() for ex in examples]
    perfect = [blanks.filled_text(ex["part_a"], *gold_fills(ex), SP) for ex in examples]
    assert perfect == references
    assert generation_metrics.bleu4(perfect, references) == pytest.approx(100.0)
    # The first blank of each text filled with "the" instead of its words.
    the = SP.encode("the")
    imperfect = []
    for ex in examples:
        fills, _ = gold_fills(ex)
        fills[0] = the
        imperfect.append(blanks.filled_text(ex["part_a"], fills, [len(f) for f in fills], SP))
    assert all(p != r for p, r in zip(imperfect, references, strict=True))
    direct = sacrebleu.corpus_bleu(imperfect, [references]).score
    assert generation_metrics.bleu4(imperfect, references) == pytest.approx(direct) and 0 < direct < 100


def test_filled_ids_and_the_official_tokenization_fixes():
    t = SP.command_tokens
    part_a = [11, t.mask, 12, t.mask, 13, t.pad, t.pad]
    assert blanks.filled_ids(part_a, [[21, 22, 0], [23, 0, 0]], [2, 1], t) == [11, 21, 22, 12, 23, 13]
    assert blanks.filled_ids(part_a, [[21]], [1], t) == [11, 21, 12, 13]  # a blank without a fill is dropped
    assert blanks.fix_tokenization("i don ' t know , e . g . it ' s . . .") == "i don't know , e.g. it 's ..."


# --- Sources -------------------------------------------------------------------------------------------------------


MODULES, VERBS = ["json", "csv", "os", "re"], ["reads", "writes", "parses", "moves", "keeps"]
TEXTS = [f"sentence {i} says that the {MODULES[i % 4]} module {VERBS[i % 5]} data every day" for i in range(20)]


def write_jsonl(directory, texts_by_split: dict[str, list[str]], key: str = "text") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for split, texts in texts_by_split.items():
        (directory / f"{split}.jsonl").write_text("".join(json.dumps({key: t}) + "\n" for t in texts))
    return f"jsonl:{directory}"


def read_task(name: str, split: str = "validation", seed=blanks.EVAL_SEED) -> list[dict]:
    return list(pipeline.task_examples(name, split, None, seed=seed, trim=False).as_numpy_iterator())


def test_jsonl_and_blank_lm_sources(tmp_path):
    source = write_jsonl(tmp_path / "j", {"train": TEXTS[:16], "validation": TEXTS[16:]}, key="body")
    task = blank_texts.register(SP, source, ratio=0.3, source_len=40, target_len=24, text_key="body", name="test_j")
    first, again = read_task(task), read_task(task)
    assert [ex["reference"].decode() for ex in first] == TEXTS[16:]
    assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, again, strict=True))  # fixed blanks
    masks = [int((ex["part_a"] == SP.command_tokens.mask).sum()) for ex in first]
    assert min(masks) >= 1 and max(masks) <= 3  # 3 of 11 words
    two_epochs = pipeline.task_examples(task, "train", None, seed=1, repeat=True, trim=False).take(32)
    epochs = [ex["inputs"].tolist() for ex in two_epochs.as_numpy_iterator()]
    assert epochs[:16] != epochs[16:]  # new blanks each epoch
    assert epochs[:16] != [ex["inputs"].tolist() for ex in read_task(task, "train", seed=2)]  # and for each seed

    yahoo = tmp_path / "yahoo"
    yahoo.mkdir()
    (yahoo / "train.txt").write_text("a b c d e f g h i j\n")
    (yahoo / "valid.txt").write_text("  what is _UNK ? it is a b c d e f  \nshort\n")
    task = blank_texts.register(SP, f"blank_lm:{yahoo}", ratio=0.2, source_len=40, target_len=24, name="test_y")
    (ex,) = read_task(task)  # "short" has no blank at 0.2
    assert ex["reference"] == b"what is [UNK] ? it is a b c d e f"
    assert (ex["inputs"] == SP.command_tokens.unk).sum() == 1

    with pytest.raises(ValueError, match="finetune.source='tfds' does not name texts"):
        blank_texts.register(SP, "tfds", ratio=0.3, source_len=40, target_len=24)
    with pytest.raises(ValueError, match="lacks"):
        blank_texts.register(SP, f"jsonl:{tmp_path / 'none'}", ratio=0.3, source_len=40, target_len=24)


IMDB = "imdb_reviews/plain_text:1.0.0"  # any TFDS builder with a text feature


def test_a_tfds_text_feature():
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        task = blank_texts.register(SP, f"tfds:{IMDB}", ratio=0.5, source_len=64, target_len=64, name="test_t")
        examples = read_task(task, "test")
        raw = [" ".join(ex["text"].decode().split()) for ex in tfds.as_numpy(tfds.load(IMDB, split="test"))]
        with pytest.raises(ValueError, match=f"finetune.text_key='body' is not a feature of {IMDB}"):
            blank_texts.register(SP, f"tfds:{IMDB}", ratio=0.5, source_len=64, target_len=64, text_key="body",
                                 name="test_t2")  # fmt: skip
            read_task("test_t2", "test")
    kept = [r for r in raw if len(r.split()) >= 2]  # a text of one word has no blank at 0.5
    assert [ex["reference"].decode() for ex in examples] == kept and kept
    for ex in examples:
        fills, lengths = gold_fills(ex)
        assert SP.decode(blanks.filled_ids(ex["part_a"], fills, lengths, SP.command_tokens)) == ex["reference"].decode()


def test_the_demo_texts():
    validation = infill.texts("validation")
    assert len(validation) == 178 and not set(validation) & set(infill.texts("train"))
    assert all(infill.WORDS[0] <= len(t.split()) <= infill.WORDS[1] and "  " not in t for t in validation)


# --- Fine-tuning ---------------------------------------------------------------------------------------------------


def test_finetunes_and_scores_the_filled_text(init_dir, tmp_path):  # noqa: F811
    """Two steps of the official recipe on a jsonl of 16 texts, then greedy filling of every blank of 4 texts and
    BLEU of the whole filled texts; bad settings fail naming their key."""
    c = seq2seq.recipe_config(seq2seq.BLANK)
    c.finetune.update(source=write_jsonl(tmp_path / "data", {"train": TEXTS[:16], "validation": TEXTS[16:]}),
                      blank_ratio=0.3, epochs=1, answer_len=16)  # fmt: skip
    c.data.update(seq_len=64, batch_size=8)
    assert c.finetune.pad_part_a and c.finetune.num_beams == 1 and c.finetune.metric == "bleu"
    scores = finetuning_job.run(c, init_dir, str(tmp_path / "tuned"))
    assert 0.0 <= scores["bleu4"] <= 100.0 and scores["examples_per_s"] > 0
    records = read_jsonl(tmp_path / "tuned" / "predictions_validation.jsonl")
    assert [r["reference"] for r in records] == TEXTS[16:]
    # Each prediction is its Part A with the blanks filled: it starts with Part A's text before the first blank.
    for record, ex in zip(records, read_task(blank_texts.TASK), strict=True):
        first = ex["part_a"].tolist().index(SP.command_tokens.mask)
        assert record["prediction"].startswith(SP.decode(ex["part_a"][:first].tolist()))

    c.finetune.blank_ratio = 0.0
    with pytest.raises(ValueError, match=r"finetune.blank_ratio must be in \(0, 1\]"):
        finetuning_job.run(c, init_dir, str(tmp_path / "bad"))
    c.finetune.update(blank_ratio=0.3, source="tfds")
    with pytest.raises(ValueError, match="finetune.source='tfds' does not name texts to blank"):
        finetuning_job.run(c, init_dir, str(tmp_path / "bad"))
