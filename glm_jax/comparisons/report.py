"""The reproduction's results (`results.jsonl`, one line per finished job) as a Markdown table of
mean ± std over seeds, the paper's claims checked against it, and a figure like the paper's Figure 4."""

import json
import math
import statistics

from etils import epath

from glm_jax.comparisons import plan

RESULTS = "results.jsonl"
# (job, score, heading, scale): the table's columns in order; a lower perplexity is better.
COLUMNS = (
    ("cloze", "accuracy", "cloze demo, cloze (%)", 100.0),
    ("classify", "accuracy", "cloze demo, classifier (%)", 100.0),
    ("summary", "rougeLsum", "summary ROUGE-Lsum", 1.0),
    ("infill_0.1", "bleu4", "infilling BLEU, 10%", 1.0),
    ("infill_0.5", "bleu4", "infilling BLEU, 50%", 1.0),
    ("perplexity", "ppl_unidirectional", "perplexity, uni. ↓", 1.0),
    ("perplexity", "ppl_bidirectional", "perplexity, bi. ↓", 1.0),
)


def read(root: str) -> list[dict]:
    path = epath.Path(root) / RESULTS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def values(records: list[dict], variant: str, job: str, score: str) -> list[float]:
    """The score of every seed that finished `job` for `variant`, in seed order."""
    found = [r for r in records if r["variant"] == variant and r["job"] == job and score in r["scores"]]
    return [float(r["scores"][score]) for r in sorted(found, key=lambda r: r["seed"])]


def mean_std(xs: list[float]) -> tuple[float, float] | None:
    """Mean and sample standard deviation (0 for one value); None for none."""
    if not xs:
        return None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def cell(xs: list[float], scale: float) -> str:
    stats = mean_std(xs)
    if stats is None:
        return "—"
    mean, std = stats[0] * scale, stats[1] * scale
    digits = 1 if abs(mean) >= 100 else 2
    return f"{mean:.{digits}f} ± {std:.{digits}f}" + ("" if len(xs) > 1 else " (1 seed)")


def table(records: list[dict], variants: list[plan.Variant]) -> str:
    """The Markdown table: a row per variant, a column per score, `—` where a variant has none."""
    head = ["variant", "parameters", "seeds", *(heading for _, _, heading, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for v in variants:
        params = values(records, v.name, "pretrain", "parameters")
        seeds = sorted({r["seed"] for r in records if r["variant"] == v.name and r["job"] == "pretrain"})
        cells = [cell(values(records, v.name, job, score), scale) for job, score, _, scale in COLUMNS]
        count = f"{int(params[0]):,}" if params else "—"
        lines.append(f"| {v.label} | {count} | {','.join(map(str, seeds)) or '—'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The paper's claims: (claim, (variant, job, score) better, (variant, job, score) worse, lower is better).
CLAIMS = (
    ("GLM beats BERT on cloze NLU", ("glm", "cloze", "accuracy"), ("bert", "cloze", "accuracy"), False),
    ("cloze fine-tuning beats classifier fine-tuning (GLM)", ("glm", "cloze", "accuracy"),
     ("glm", "classify", "accuracy"), False),
    ("cloze fine-tuning beats classifier fine-tuning (BERT)", ("bert", "cloze", "accuracy"),
     ("bert", "classify", "accuracy"), False),
    ("removing span shuffling hurts NLU", ("glm", "cloze", "accuracy"), ("no_shuffle", "cloze", "accuracy"), False),
    ("sentinel tokens hurt NLU", ("glm", "cloze", "accuracy"), ("sentinel", "cloze", "accuracy"), False),
    ("removing block positions hurts long infilling", ("glm", "infill_0.5", "bleu4"),
     ("no_block_position", "infill_0.5", "bleu4"), False),
    ("removing block positions hurts generation", ("glm", "summary", "rougeLsum"),
     ("no_block_position", "summary", "rougeLsum"), False),
    ("removing block positions hurts language modeling", ("glm", "perplexity", "ppl_unidirectional"),
     ("no_block_position", "perplexity", "ppl_unidirectional"), True),
    ("GLM-Doc (a generation objective) beats GLM on language modeling", ("glm_doc", "perplexity",
     "ppl_unidirectional"), ("glm", "perplexity", "ppl_unidirectional"), True),
    ("GPT beats GLM-Doc on unidirectional language modeling", ("gpt", "perplexity", "ppl_unidirectional"),
     ("glm_doc", "perplexity", "ppl_unidirectional"), True),
    ("bidirectional context helps GLM-Doc's language modeling", ("glm_doc", "perplexity", "ppl_bidirectional"),
     ("glm_doc", "perplexity", "ppl_unidirectional"), True),
    ("bidirectional context helps GLM's language modeling", ("glm", "perplexity", "ppl_bidirectional"),
     ("glm", "perplexity", "ppl_unidirectional"), True),
    ("GLM-Doc with bidirectional context beats GPT", ("glm_doc", "perplexity", "ppl_bidirectional"),
     ("gpt", "perplexity", "ppl_unidirectional"), True),
)  # fmt: skip


def verdict(better: list[float], worse: list[float], lower: bool) -> str:
    """`holds` if the difference of the means is in the claimed direction by more than twice its
    standard error (from the seeds' sample stds), `does not hold` if the other way by as much, else
    `within noise`; `not run` without values, `one seed` if either side has a single seed."""
    if not better or not worse:
        return "not run"
    if len(better) < 2 or len(worse) < 2:
        return "one seed"
    (b, sb), (w, sw) = mean_std(better), mean_std(worse)
    gain = (w - b) if lower else (b - w)
    error = math.sqrt(sb**2 / len(better) + sw**2 / len(worse))
    if gain > 2 * error:
        return "holds"
    return "does not hold" if gain < -2 * error else "within noise"


def claims(records: list[dict]) -> str:
    """A Markdown table of the paper's claims: both sides' means ± std and the verdict."""
    lines = ["| claim | claimed better | claimed worse | verdict |", "|---|---:|---:|---|"]
    for claim, better, worse, lower in CLAIMS:
        b, w = values(records, *better), values(records, *worse)
        scale = 100.0 if better[2] == "accuracy" else 1.0
        lines.append(f"| {claim} | {better[0]} {better[2]}: {cell(b, scale)} | {worse[0]} {worse[2]}: "
                     f"{cell(w, scale)} | {verdict(b, w, lower)} |")  # fmt: skip
    return "\n".join(lines)


def figure(records: list[dict], variants: list[plan.Variant], path: str) -> None:
    """A PNG like the paper's Figure 4 (zero-shot language modeling, unidirectional against
    bidirectional), beside the cloze demo's accuracy as a cloze and as a classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lm, nlu) = plt.subplots(1, 2, figsize=(12, 4.5))
    panels = [
        (lm, "zero-shot perplexity (validation) ↓", "perplexity",
         [("ppl_unidirectional", "unidirectional", 1.0), ("ppl_bidirectional", "bidirectional", 1.0)]),
        (nlu, "cloze demo accuracy (%)", None,
         [("cloze", "cloze fine-tuning", 100.0), ("classify", "classifier fine-tuning", 100.0)]),
    ]  # fmt: skip
    width = 0.38
    for axis, title, job, bars in panels:
        for k, (name, label, scale) in enumerate(bars):
            means, errors = [], []
            for v in variants:
                xs = values(records, v.name, job or name, name if job else "accuracy")
                stats = mean_std(xs) or (math.nan, 0.0)
                means.append(stats[0] * scale)
                errors.append(stats[1] * scale)
            offsets = [i + (k - 0.5) * width for i in range(len(variants))]
            axis.bar(offsets, means, width, yerr=errors, capsize=3, label=label)
        axis.set_xticks(range(len(variants)), [v.label for v in variants], rotation=30, ha="right")
        axis.set_title(title)
        axis.legend()
    if any(bar.get_height() > 0 for bar in lm.patches):  # a log axis needs a value (none: e.g. --variants=bert)
        lm.set_yscale("log")
    fig.suptitle("GLM's comparisons at small scale (mean ± std over pretraining seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(root: str, variants: list[plan.Variant], header: str) -> str:
    """Writes `comparisons.md` (the tables) and `comparisons.png` under `root`; returns the Markdown."""
    records = read(root)
    text = "\n\n".join([header, table(records, variants), "The paper's claims at this scale:", claims(records)])
    (epath.Path(root) / "comparisons.md").write_text(text + "\n")
    figure(records, variants, str(epath.Path(root) / "comparisons.png"))
    return text
