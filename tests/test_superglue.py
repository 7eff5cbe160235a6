"""SuperGLUE as cloze questions: the official GLM patterns on worked examples (real BERT vocabulary), truncation,
the TFDS builders (mocked), the original jsonl files, and WSC's candidates."""

import dataclasses
import functools
import json

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import ROOT

from glm_jax.data.vocab import default_vocabulary
from glm_jax.data.wordpiece import BertVocabulary
from glm_jax.downstream import cloze, superglue

BERT_VOCAB = ROOT.parent / "shared" / "vocab" / "bert-base-uncased-vocab.txt"

# Worked examples of the SuperGLUE paper (its table of development examples), as TFDS gives them; the long passages
# are cut to a sentence or two. Curly quotes and the en dash are in the data and made plain by the patterns.
PETE = "Mark told Pete many lies about himself, which Pete included in his book. He should have been more truthful."
RECORD_PASSAGE = (
    "(CNN) Puerto Rico on Sunday overwhelmingly voted for statehood. But Congress, the only body that can approve "
    "new states, will ultimately decide whether the status of the US commonwealth changes.\n@highlight\n"
    "Puerto Rico voted Sunday in favor of US statehood"
)
SUSAN = "Susan wanted to have a birthday party. Her first friend could not go to the party because she was sick."
EXAMPLES = {
    "boolq": [
        {
            "question": "is barq's root beer a pepsi product",
            "passage": "Barq\u2019s \u2013 Barq\u2019s is an American soft drink. Its brand of root beer is notable "
            "for having caffeine.",
            "idx": 0,
            "label": 0,
        }
    ],
    "cb": [
        {
            "premise": "B: What do you think, do you think we are, setting a trend?",
            "hypothesis": "they are setting a trend",
            "idx": 0,
            "label": 2,
        }
    ],
    "copa": [
        {
            "premise": "My body cast a shadow over the grass.",
            "choice1": "The sun was rising.",
            "choice2": "The grass was cut.",
            "question": "cause",
            "idx": 0,
            "label": 0,
        }
    ],
    "multirc": [
        {
            "paragraph": SUSAN,
            "question": "Did Susan\u2019s sick friend recover?",
            "answer": answer,
            "idx": {"paragraph": 3, "question": 7, "answer": i},
            "label": label,
        }
        for i, (answer, label) in enumerate([("Yes, she recovered", 1), ("No", 0)])
    ],
    "record": [
        {
            "passage": RECORD_PASSAGE,
            "query": "For one, they can truthfully say, \u201cDon\u2019t blame me, I didn\u2019t vote for them,\u201d "
            "when discussing the @placeholder presidency",
            "entities": ["CNN", "Congress", "Puerto Rico", "US"],
            "answers": ["US"],
            "idx": {"passage": 2, "query": 5},
        }
    ],
    "rte": [
        {
            "premise": "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, "
            "according to the Christopher Reeve Foundation.",
            "hypothesis": "Christopher Reeve had an accident.",
            "idx": 0,
            "label": 1,
        }
    ],
    "wic": [
        {
            "word": "board",
            "sentence1": "Room and board.",
            "sentence2": "He nailed boards across the windows.",
            "start1": 9,
            "start2": 10,
            "end1": 14,
            "end2": 16,
            "idx": 0,
            "label": 0,
        }
    ],
    "wsc": [
        {
            "text": PETE,
            "span1_index": i,
            "span2_index": 13,
            "span1_text": span,
            "span2_text": "He",
            "idx": i,
            "label": y,
        }
        for i, (span, y) in enumerate([("Pete", 0), ("Mark", 1)])
    ],
}


@dataclasses.dataclass(frozen=True)
class Worked:
    part_a: str  # the first question's Part A, as BERT pieces
    choices: tuple[str, ...]  # the first question's answers, as pieces
    labels: tuple[int, ...]  # of every question of the validation split
    groups: tuple[int, ...] = ()


WORKED = {
    # pattern 4: ['Based on the following passage', question, '?', MASK, '.', passage]
    "boolq": Worked(
        "[CLS] based on the following passage is bar ##q ' s root beer a pepsi product ? [MASK] . bar ##q ' s - bar "
        "##q ' s is an american soft drink . its brand of root beer is notable for having caf ##fe ##ine . [PAD]",
        ("no", "yes"),
        (0,),
    ),
    # pattern 3: [hypothesis, '?', MASK, '.', premise]
    "cb": Worked(
        "[CLS] they are setting a trend ? [MASK] . b : what do you think , do you think we are , setting a trend ? "
        "[PAD]",
        ("yes", "no", "maybe"),
        (2,),
    ),
    # pattern 0: ['"', choice1, '" or "', choice2, '"?', premise, ' because', MASK, '.']
    "copa": Worked(
        '[CLS] " the sun was rising " or " the grass was cut " ? my body cast a shadow over the grass because [MASK] '
        ". [PAD]",
        ("the sun was rising <eop>", "the grass was cut <eop>"),
        (0,),
    ),
    # pattern 0: [passage, '.', ' Question:', question + '?', ' Is it', answer, '?', MASK, '.']
    "multirc": Worked(
        "[CLS] susan wanted to have a birthday party . her first friend could not go to the party because she was "
        "sick . question : did susan ' s sick friend recover ? is it yes , she recovered ? [MASK] . [PAD]",
        ("no", "yes"),
        (1, 0),
        (3_000_007, 3_000_007),
    ),
    # [passage, query before @placeholder, MASK, query after]
    "record": Worked(
        "[CLS] ( cnn ) puerto rico on sunday overwhelmingly voted for statehood . but congress , the only body that "
        "can approve new states , will ultimately decide whether the status of the us commonwealth changes . - "
        "puerto rico voted sunday in favor of us statehood for one , they can truth ##fully say , \" don ' t blame "
        "me , i didn ' t vote for them , \" when discussing the [MASK] presidency [PAD]",
        ("cnn <eop>", "congress <eop>", "puerto rico <eop>", "us <eop>"),
        (3,),
        (2_000_005,),
    ),
    # pattern 0: ['"', hypothesis, '" ?', MASK, ', "', premise, '"']
    "rte": Worked(
        '[CLS] " christopher reeve had an accident " ? [MASK] , " dana reeve , the widow of the actor christopher '
        'reeve , has died of lung cancer at age 44 , according to the christopher reeve foundation . " [PAD]',
        ("yes", "no"),
        (1,),
    ),
    # pattern 1: [sentence1, sentence2, ' Does board have the same meaning in both sentences?', MASK]
    "wic": Worked(
        "[CLS] room and board . he nailed boards across the windows . does board have the same meaning in both "
        "sentences ? [MASK] [PAD]",
        ("no", "yes"),
        (0,),
    ),
    # pattern 2: [text with *pronoun*, " Question: ... pronoun '*He*' refer to?", ' Answer:', MASK, '.']
    "wsc": Worked(
        "[CLS] mark told pete many lies about himself , which pete included in his book . * he * should have been "
        "more truth ##ful . question : in the passage above , what does the pro ##no ##un ' * he * ' refer to ? "
        "answer : [MASK] . [PAD]",
        ("pete <eop>", "mark <eop>"),
        (0, 0),
        (0, 1),  # the examples' own labels: Pete False, Mark True
    ),
}


def literal_source(examples: list[dict]) -> seqio.DataSource:
    """Every split: `examples`, TFDS-shaped."""

    def dataset_fn(split, shuffle_files, seed=None):
        return functools.reduce(tf.data.Dataset.concatenate, map(tf.data.Dataset.from_tensors, examples))

    return seqio.FunctionDataSource(dataset_fn, splits=("train", "validation"))


def questions(task, vocabulary, source, split="validation", seq_len=256, limit=-1) -> list[dict]:
    name = superglue.register(task, vocabulary, source=source, name=f"test_superglue_{task}")
    ds = seqio.get_mixture_or_task(name).get_dataset(
        {"inputs": seq_len}, split=split, shuffle=False, trim_output_features=False
    )
    return list(ds.take(limit).as_numpy_iterator())


@pytest.fixture(scope="module")
def bert():
    if not BERT_VOCAB.exists():
        pytest.skip(f"the real BERT vocabulary {BERT_VOCAB} is absent")
    return BertVocabulary(str(BERT_VOCAB))


@pytest.fixture(scope="module")
def pieces(bert):
    names = BERT_VOCAB.read_text(encoding="utf-8").rstrip("\n").split("\n") + ["<sop>", "<eop>"]
    return lambda ids: " ".join(names[i] for i in ids)


def choice_pieces(question, pieces) -> tuple[str, ...]:
    return tuple(pieces(ids[:n]) for ids, n in zip(question["choice_ids"], question["choice_lengths"], strict=True))


@pytest.mark.parametrize("task", superglue.TASKS)
def test_worked_example(task, bert, pieces):
    worked = WORKED[task]
    qs = questions(task, bert, literal_source(EXAMPLES[task]))
    assert pieces(qs[0]["inputs"]) == worked.part_a
    assert choice_pieces(qs[0], pieces) == worked.choices
    assert tuple(q["label"] for q in qs) == worked.labels
    assert tuple(q["group"] for q in qs) == (worked.groups or (-1,) * len(qs))
    assert all(q["truncated"] == 0 for q in qs)
    expected_answers = [b"US"] if task == "record" else []
    assert all(list(q["answers"]) == expected_answers for q in qs)


def test_copa_train_adds_mirrors(bert, pieces):
    original, mirror = questions("copa", bert, literal_source(EXAMPLES["copa"]), split="train")
    assert pieces(original["inputs"]) == WORKED["copa"].part_a
    assert pieces(mirror["inputs"]).startswith('[CLS] " the grass was cut " or " the sun was rising " ?')
    assert choice_pieces(mirror, pieces) == WORKED["copa"].choices[::-1]
    assert (original["label"], mirror["label"]) == (0, 1)


def test_record_train_has_one_question_per_gold_answer(bert, pieces):
    two_golds = EXAMPLES["record"][0] | {"answers": ["Puerto Rico", "US"]}
    qs = questions("record", bert, literal_source([two_golds]), split="train")
    assert [choice_pieces(q, pieces)[0] for q in qs] == ["puerto rico <eop>", "us <eop>"]
    for q in qs:  # the gold first, then the other non-gold entities
        assert q["label"] == 0 and len(q["answers"]) == 1
        assert sorted(choice_pieces(q, pieces)[1:]) == ["cnn <eop>", "congress <eop>"]


def test_wsc_train_keeps_true_examples(bert, pieces):
    (q,) = questions("wsc", bert, literal_source(EXAMPLES["wsc"]), split="train")
    assert choice_pieces(q, pieces) == ("mark <eop>", "pete <eop>")
    assert (q["label"], q["group"]) == (0, 1)


def layouts(q, pieces) -> list[str]:
    """A question's Part A layouts, as pieces."""
    ends = np.cumsum(q["part_a_lengths"])
    return [pieces(q["inputs"][end - n : end]) for n, end in zip(q["part_a_lengths"], ends, strict=True)]


def test_truncation_cuts_the_passage_end(bert, pieces):
    passage = "Barq's is an American soft drink. " + "Its brand of root beer is notable for having caffeine. " * 20
    long = EXAMPLES["boolq"][0] | {"passage": passage}
    (q,) = questions("boolq", bert, literal_source([long]), seq_len=32)
    assert layouts(q, pieces) == [  # seq_len less the verbalizer's one token: 31
        "[CLS] based on the following passage is bar ##q ' s root beer a pepsi product ? [MASK] . bar ##q ' s is an "
        "american soft drink . its [PAD]"
    ]
    assert q["truncated"] == 1 and choice_pieces(q, pieces) == ("no", "yes") and list(q["choice_part_a"]) == [0, 0]


# Answers of different lengths need different cuts: each is scored with the Part A the official code gives it
# (its own copy of the pattern truncated against that answer's length), answers that need the same cut share one.
def test_copa_answers_get_their_own_cut(bert, pieces):
    copa = EXAMPLES["copa"][0] | {
        "premise": "My body cast a long dark shadow over the freshly cut green grass.",
        "choice2": "The grass was cut by my neighbour.",
    }
    (q,) = questions("copa", bert, literal_source([copa]), seq_len=36)
    choices = '[CLS] " the sun was rising " or " the grass was cut by my neighbour " ? my body cast a long dark'
    assert layouts(q, pieces) == [  # 36 less 5 answer tokens: 31; 36 less 8: 28 (the full Part A is 35)
        choices + " shadow over the because [MASK] . [PAD]",
        choices + " because [MASK] . [PAD]",
    ]
    assert choice_pieces(q, pieces) == ("the sun was rising <eop>", "the grass was cut by my neighbour <eop>")
    assert list(q["choice_part_a"]) == [0, 1] and q["truncated"] == 1


def test_wsc_answers_get_their_own_cut(bert, pieces):
    text = PETE.replace("in his book.", "in his long and very boring book about all his travels.")
    rows = [
        EXAMPLES["wsc"][1] | {"text": text, "span1_text": "Mark Twain the author"},
        EXAMPLES["wsc"][0] | {"text": text},
    ]
    q = questions("wsc", bert, literal_source(rows), seq_len=40)[0]
    question = (
        "question : in the passage above , what does the pro ##no ##un ' * he * ' refer to ? answer : [MASK] . [PAD]"
    )
    assert layouts(q, pieces) == [  # 40 less "pete <eop>": 38; less "mark twain the author <eop>": 35
        "[CLS] mark told pete many lies about himself , which pete included " + question,
        "[CLS] mark told pete many lies about himself , " + question,
    ]
    assert choice_pieces(q, pieces) == ("mark twain the author <eop>", "pete <eop>")
    assert list(q["choice_part_a"]) == [1, 0]


def test_record_answers_get_their_own_cut(bert, pieces):
    long = EXAMPLES["record"][0] | {"passage": RECORD_PASSAGE.replace("But Congress", "But Congress " * 100)}
    (q,) = questions("record", bert, literal_source([long]), seq_len=64)
    query = (
        "for one , they can truth ##fully say , \" don ' t blame me , i didn ' t vote for them , \" when discussing "
        "the [MASK] presidency [PAD]"
    )
    start = "[CLS] ( cnn ) puerto rico on sunday overwhelmingly voted for statehood ." + " but congress" * 8
    assert layouts(q, pieces) == [start + " but congress " + query, start + " but " + query]  # 62 and 61 tokens
    assert choice_pieces(q, pieces) == ("cnn <eop>", "congress <eop>", "puerto rico <eop>", "us <eop>")
    assert list(q["choice_part_a"]) == [0, 0, 1, 0] and q["truncated"] == 1


def official_truncate(segments: list[list[tuple[list[int], bool]]], answer_len: int, seq_len: int) -> list[int]:
    """The official PVP.truncate as its loop runs it, one token at a time, then `[CLS] ... [eos]` (ids 1, 2)."""
    parts = [[[list(ids), short] for ids, short in segment] for segment in segments]
    shortenable = lambda k: sum(len(ids) for ids, short in parts[k] if short) if k < len(parts) else 0  # noqa: E731
    excess = 2 + sum(len(ids) for segment in parts for ids, _ in segment) + max(answer_len, 1) - seq_len
    for _ in range(max(excess, 0)):
        k = 0 if shortenable(0) > shortenable(1) else 1
        last = max(i for i, (ids, short) in enumerate(parts[k]) if short and ids)  # fails as the official
        parts[k][last][0].pop()
    return [1, *(t for segment in parts for ids, _ in segment for t in ids), 2]


def test_segment_cuts_equal_the_official_loop():
    """The closed form of the two-segment turns equals the official loop for every split of the excess."""
    for a in range(9):
        for b in range(9):
            for excess in range(a + b + 1):
                segments = [[(list(range(a)), True)], [(list(range(b)), True)]]
                kept = official_truncate(segments, 1, 3 + a + b - excess)
                cut_a, cut_b = (int(x) for x in cloze.segment_cuts(excess, [a, b]))
                assert kept == [1, *range(a - cut_a), *range(b - cut_b), 2], (a, b, excess)


def test_pattern_cuts_equal_the_official_loop():
    """Random patterns of one or two segments, pieces shortenable or not, cut against random answers."""
    rng = np.random.default_rng(0)
    tokens = default_vocabulary().command_tokens
    for _ in range(40):
        segments = []
        for _ in range(rng.integers(1, 3)):
            n = rng.integers(1, 5)
            segments.append(
                [(rng.integers(10, 99, rng.integers(0, 9)).tolist(), bool(rng.random() < 0.6)) for _ in range(n)]
            )
        segments[0].append(([tokens.mask], False))
        length = 2 + sum(len(ids) for seg in segments for ids, _ in seg)
        shortenable = sum(len(ids) for seg in segments for ids, short in seg if short)
        answer_len = int(rng.integers(1, 6))
        seq_len = int(rng.integers(length + answer_len - shortenable, length + answer_len + 3))
        pattern = cloze.Pattern.__new__(cloze.Pattern)  # pieces already tokenized
        pattern.description, pattern.tokens = "random", dataclasses.replace(tokens, cls=1, eos=2)
        pattern.segments = [[(tf.constant(ids, tf.int32), short) for ids, short in seg] for seg in segments]
        pattern.length = tf.constant(length)
        kept = pattern.cut(seq_len - answer_len).numpy().tolist()
        assert kept == official_truncate(segments, answer_len, seq_len), segments


def test_cb_and_rte_trim_their_two_segments_in_turn(bert, pieces):
    """Patterns 0-3 of RTE and CB: the hypothesis (first segment) and the premise (second) are cut one token at a
    time, the longer first (the premise on a tie), as the official PVP.truncate; pattern 4 has one segment."""
    hypothesis = "They are setting a new trend in the way people think about the weather today."  # 15 tokens
    premise = "B: What do you think, do you think we are, setting a trend?"  # 16 tokens
    long = EXAMPLES["cb"][0] | {"hypothesis": hypothesis, "premise": premise}
    name = superglue.register("cb", bert, source=literal_source([long]), pattern_id=3, name="test_cb_two_segments")
    ds = seqio.get_mixture_or_task(name).get_dataset({"inputs": 30}, split="validation", shuffle=False,
                                                      trim_output_features=False)  # fmt: skip
    (q,) = ds.as_numpy_iterator()
    # Part A holds 35 tokens (hypothesis 14, premise 16), 29 fit: the premise goes first (16 -> 14: 3 turns, a tie
    # goes to it), then the turns alternate (hypothesis 13, premise 13, hypothesis 12, premise 12).
    assert layouts(q, pieces) == [
        "[CLS] they are setting a new trend in the way people think about ? [MASK] . b : what do you think , do you "
        "think we are [PAD]"
    ]
    rte = EXAMPLES["rte"][0]
    for p in (0, 1, 2, 3):
        pattern = superglue.make_cloze("rte", bert, p).pattern(tf.nest.map_structure(tf.constant, rte))
        assert isinstance(pattern, tuple) and len(pattern) == 2, p
        assert pattern[1][:2] == [cloze.PROMPT, cloze.MASK], p  # a prompt spot, then the blank, as the official parts_b
    # Pattern 0's pieces, ', "' in two as the official: `[MASK], ',', ' "', premise, '"'`.
    pattern = superglue.make_cloze("rte", bert, 0).pattern(tf.nest.map_structure(tf.constant, rte))
    assert [p for p in pattern[1] if isinstance(p, str)] == [",", ' "', '"']


def test_record_order_as_the_official(bert, pieces):
    """Validation: entities made plain first, then deduplicated and sorted (curly quotes sort after letters, straight
    ones before). Train: the gold, then the other entities in that order where there are at most 9."""
    curly = EXAMPLES["record"][0] | {
        "entities": ["\u201cZeta\u201d", "Alpha", '"Beta"', '"Zeta"', "Delta"],
        "answers": ["Delta"],
    }
    (q,) = questions("record", bert, literal_source([curly]))
    assert [t.decode() for t in q["choice_texts"]] == [' "Beta"', ' "Zeta"', " Alpha", " Delta"]
    assert q["label"] == 3
    train = questions("record", bert, literal_source([curly]), split="train")
    assert [[t.decode() for t in q["choice_texts"]] for q in train] == [[" Delta", ' "Beta"', ' "Zeta"', " Alpha"]]
    many = curly | {"entities": [f"E{i:02d}" for i in range(12)] + ["Delta"]}
    (q,) = questions("record", bert, literal_source([many]), split="train")
    texts = [t.decode() for t in q["choice_texts"]]
    assert texts[0] == " Delta" and len(texts) == 10 and len(set(texts)) == 10 and q["label"] == 0
    assert texts[1:] != sorted(texts[1:])  # more than 9 others: 9 drawn at random (a seed per query)


def test_sort_strings_is_python_order():
    rng = np.random.default_rng(1)
    alphabet = list('aAzZ09 "\u201c\u201d\u00e9\u4e2d-')
    texts = {"".join(rng.choice(alphabet, rng.integers(0, 6))) for _ in range(60)}
    got = [t.decode() for t in superglue.sort_strings(tf.constant(sorted(texts, key=len))).numpy()]
    assert got == sorted(texts)


@pytest.mark.parametrize("task", superglue.TASKS)
def test_tfds_builders_mocked(task):
    num_labels = {"boolq": 2, "cb": 3, "copa": 2, "multirc": 2, "rte": 2, "wic": 2}
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        for split in ("train", "validation"):
            qs = questions(task, default_vocabulary(), "tfds", split=split, limit=4)
            assert qs, split
            for q in qs:
                c, t = q["choice_ids"].shape
                assert q["inputs"].dtype == np.int32 and q["inputs"].ndim == 1 and len(q["inputs"]) <= 256
                assert q["choice_ids"].dtype == np.int32 and c >= 1 and t >= 1
                assert q["choice_lengths"].shape == (c,) and q["choice_texts"].shape == (c,)
                assert 1 <= q["choice_lengths"].min() and q["choice_lengths"].max() <= t
                assert q["label"].dtype == np.int32 and -1 <= q["label"] < c
                assert q["group"].dtype == np.int64 and q["truncated"] in (0, 1) and q["answers"].ndim == 1
                if task in num_labels:
                    assert c == num_labels[task] and 0 <= q["label"]
                if task == "wsc" or (task == "record" and split == "train"):
                    assert q["label"] == 0


def _original(task: str, examples: list[dict]) -> list[dict]:
    """The original SuperGLUE jsonl lines of TFDS-shaped `examples` (of one passage for MultiRC)."""
    if task == "multirc":
        first = examples[0]
        answers = [{"text": e["answer"], "idx": e["idx"]["answer"], "label": e["label"]} for e in examples]
        question = {"question": first["question"], "idx": first["idx"]["question"], "answers": answers}
        return [{"idx": first["idx"]["paragraph"], "passage": {"text": first["paragraph"], "questions": [question]}}]
    if task == "record":
        (e,) = examples
        text = e["passage"]
        spans = [(text.index(s), text.index(s) + len(s) - 1) for s in ("CNN", "Puerto Rico", "Congress", "US")]
        spans.append((text.rindex("US"), text.rindex("US") + 1))  # a repeated entity
        answers = [{"start": text.index("US"), "end": text.index("US") + 1, "text": "US"}]
        qa = {"query": e["query"], "idx": e["idx"]["query"], "answers": answers}
        entities = [{"start": s, "end": t} for s, t in spans]
        return [{"idx": e["idx"]["passage"], "passage": {"text": text, "entities": entities}, "qas": [qa]}]
    names = {"cb": ("entailment", "contradiction", "neutral"), "rte": ("entailment", "not_entailment")}
    lines = []
    for e in examples:
        line = dict(e)
        if task in names:
            line["label"] = names[task][e["label"]]
        elif task != "copa":
            line["label"] = bool(e["label"])
        if task == "wsc":
            line["target"] = {k: line.pop(k) for k in ("span1_index", "span2_index", "span1_text", "span2_text")}
        lines.append(line)
    return lines


def _unlabelled(line: dict) -> dict:
    line = {k: v for k, v in line.items() if k != "label"}
    if "passage" in line and "questions" in line["passage"]:
        for question in line["passage"]["questions"]:
            question["answers"] = [{k: v for k, v in a.items() if k != "label"} for a in question["answers"]]
    for qa in line.get("qas", []):
        del qa["answers"]
    return line


def _write(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _python(value):
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_python(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value.item()


def read(source: seqio.DataSource, split: str) -> list[dict]:
    return [_python(ex) for ex in source.get_dataset(split, shuffle=False).as_numpy_iterator()]


@pytest.mark.parametrize("task", superglue.TASKS)
def test_jsonl_gives_the_tfds_examples(task, tmp_path):
    lines = _original(task, EXAMPLES[task])
    _write(tmp_path / "train.jsonl", lines)
    _write(tmp_path / "val.jsonl", lines)
    _write(tmp_path / "test.jsonl", [_unlabelled(line) for line in lines])
    source = superglue.examples(task, f"jsonl:{tmp_path}")
    assert read(source, "train") == read(source, "validation") == EXAMPLES[task]
    unknown = {"label": -1} if task != "record" else {"answers": []}
    assert read(source, "test") == [example | unknown for example in EXAMPLES[task]]


def test_jsonl_malformed_line_names_file_and_line(tmp_path):
    line = json.dumps(_original("cb", EXAMPLES["cb"])[0])
    _write(tmp_path / "train.jsonl", [json.loads(line)])
    (tmp_path / "val.jsonl").write_text(line + "\n" + line.replace('"neutral"', '"maybe"') + "\n")
    source = superglue.examples("cb", f"jsonl:{tmp_path}")
    with pytest.raises(Exception, match=r"val\.jsonl:2: malformed"):
        read(source, "validation")
    (tmp_path / "val.jsonl").write_text(line + "\n\n{not json\n")
    with pytest.raises(Exception, match=r"val\.jsonl:3: malformed"):
        read(source, "validation")
    (tmp_path / "val.jsonl").unlink()
    with pytest.raises(ValueError, match="val.jsonl"):
        superglue.examples("cb", f"jsonl:{tmp_path}")


def test_wsc_candidates_group_the_split():
    trophy = "The trophy doesn't fit into the brown suitcase because it is too large."
    rows = [
        *EXAMPLES["wsc"],
        EXAMPLES["wsc"][0] | {"span1_text": "mark", "idx": 2, "label": 0},  # a case variant of a candidate
        EXAMPLES["wsc"][0] | {"span2_index": 11, "span2_text": "his", "span1_text": "Pete", "idx": 3},  # other pronoun
        {
            "text": trophy,
            "span1_index": 1,
            "span2_index": 10,
            "span1_text": "The trophy",
            "span2_text": "it",
            "idx": 4,
            "label": 1,
        },  # fmt: skip
    ]
    examples = superglue.wsc_examples(rows, train=False)
    assert [e["candidates"] for e in examples] == [["Pete", "Mark"], ["Mark", "Pete"], ["mark", "Pete"], ["Pete"],
                                                   ["The trophy"]]  # fmt: skip
    assert examples[3]["marked_text"].endswith("which Pete included in *his* book. He should have been more truthful.")
    # the pronoun's index is off by one in the row: repaired as the official WscProcessor does
    assert examples[4]["marked_text"] == "The trophy doesn't fit into the brown suitcase because *it* is too large."
    assert [e["idx"] for e in superglue.wsc_examples(rows, train=True)] == [1, 4]

    qs = questions("wsc", default_vocabulary(), literal_source(rows))
    assert [list(q["choice_texts"]) for q in qs] == [[b" " + c.encode() for c in e["candidates"]] for e in examples]
    assert [q["group"] for q in qs] == [0, 1, 0, 0, 1] and all(q["label"] == 0 for q in qs)


def test_register_rejects_unknown_task_and_pattern():
    with pytest.raises(ValueError, match="'boolq', 'cb', 'copa'"):
        superglue.register("axb", default_vocabulary())
    with pytest.raises(ValueError, match=r"copa has no pattern 2; expected one of \(0, 1\)"):
        superglue.register("copa", default_vocabulary(), pattern_id=2)


# Some other official patterns of the worked examples: (Part A, verbalizer) as BERT pieces.
OTHER_PATTERNS = {
    ("boolq", 1): (
        "[CLS] bar ##q ' s - bar ##q ' s is an american soft drink . its brand of root beer is notable for having caf "
        "##fe ##ine . question : is bar ##q ' s root beer a pepsi product ? answer : [MASK] . [PAD]",
        "false true",
    ),
    ("cb", 4): (
        "[CLS] b : what do you think , do you think we are , setting a trend ? question : they are setting a trend "
        "true , false or neither ? answer : [MASK] [PAD]",
        "true false neither",
    ),
    ("copa", 1): (
        "[CLS] the sun was rising or the grass was cut ? my body cast a shadow over the grass because [MASK] . [PAD]",
        "",
    ),
    ("multirc", 3): (
        "[CLS] susan wanted to have a birthday party . her first friend could not go to the party because she was "
        "sick did susan ' s sick friend recover - [ [MASK] ] yes , she recovered [PAD]",
        "false true",
    ),
    ("rte", 4): (
        "[CLS] dana reeve , the widow of the actor christopher reeve , has died of lung cancer at age 44 , according "
        "to the christopher reeve foundation . question : christopher reeve had an accident true or false ? answer : "
        "[MASK] [PAD]",
        "true false",
    ),
    ("wic", 2): (
        '[CLS] board . sense ( 1 ) ( a ) " room and board . " ( [MASK] ) " he nailed boards across the windows . " '
        "[PAD]",
        "2 b",
    ),
}


@pytest.mark.parametrize("task", superglue.TASKS)
def test_every_pattern(task, bert, pieces):
    """Each official pattern makes a Part A with one blank; the verbalizers are single BERT tokens."""
    rows = superglue.wsc_examples(EXAMPLES[task], train=False) if task == "wsc" else EXAMPLES[task]
    example = tf.nest.map_structure(tf.constant, rows[0])
    for p in superglue.PATTERN_IDS[task]:
        questions = superglue.make_cloze(task, bert, p)
        inputs, truncated = cloze.part_a(questions.pattern(example), bert, bert.command_tokens, 256)
        text = pieces(inputs.numpy())
        assert text.startswith("[CLS] ") and text.endswith(" [PAD]") and text.split().count("[MASK]") == 1, p
        assert truncated == 0 and questions.single_token == (task not in ("copa", "record", "wsc")), p
        if (task, p) in OTHER_PATTERNS:
            words = pieces(cloze.verbalizer_ids(questions.verbalizer, bert))
            assert (text, words) == OTHER_PATTERNS[task, p]


def test_recipes():
    assert set(superglue.SUPERGLUE_RECIPES) == set(superglue.TASKS)
    assert superglue.SUPERGLUE_RECIPES["wsc"].loss == "mix" and superglue.SUPERGLUE_RECIPES["wsc"].length_penalty == 1
    assert {t: r.max_choices for t, r in superglue.SUPERGLUE_RECIPES.items() if r.answer_len == 1} == {
        "boolq": 2, "cb": 3, "multirc": 2, "rte": 2, "wic": 2,
    }  # fmt: skip
