"""The evaluation report as Markdown tables and a PNG (what ``python -m recommender evaluate`` prints)."""

from __future__ import annotations

from pathlib import Path

#: (set, measure key, column title) of the main table, in order.
TABLE_COLUMNS = (
    ("known_item", "hit@1", "known-item hit@1"),
    ("known_item", "hit@10", "known-item hit@10"),
    ("known_item", "mrr@10", "known-item MRR@10"),
    ("known_item", "macro_mrr@10", "known-item macro-MRR@10"),
    ("labels", "p@10", "MAL-label P@10"),
    ("labels", "ndcg@10", "MAL-label nDCG@10"),
    ("long_tail", "mrr@10", "long-tail MRR@10"),
)
#: Columns of the paired-difference table.
DIFF_COLUMNS = tuple(c for c in TABLE_COLUMNS if c[1] not in ("hit@1", "hit@10"))


def _cell(report: dict, part: str, name: str, key: str) -> str:
    value = report[part].get(name, {}).get(key)
    if value is None:
        return "–"
    span = report.get("intervals", {}).get(part, {}).get(name, {}).get(key)
    return f"{value:.3f} [{span[0]:.2f}, {span[1]:.2f}]" if span else f"{value:.3f}"


def _diff_cell(report: dict, part: str, name: str, key: str) -> str:
    found = report.get("vs_count", {}).get(part, {}).get(name, {}).get(key)
    if not found:
        return "–"
    return f"{found['mean']:+.3f} [{found['low']:+.2f}, {found['high']:+.2f}]"


def _share(found: dict) -> str:
    return f"{found['share']:.3f} [{found['interval'][0]:.2f}, {found['interval'][1]:.2f}]"


def format_table(report: dict, default: str | None = None) -> str:
    """The report as Markdown: means with 95 % intervals, the paired difference to ``count``, the notes under them."""
    setup = report["setup"]
    default = default or setup.get("settings", {}).get("aggregation")
    names = list(report["known_item"])
    header = "| aggregation | " + " | ".join(title for _, _, title in TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for name in names:
        label = f"**{name}** (default)" if name == default else name
        lines.append(f"| {label} | " + " | ".join(_cell(report, p, name, k) for p, k, _ in TABLE_COLUMNS) + " |")
    counts = {part: report[part][names[0]]["queries"] for part in ("known_item", "labels", "long_tail")}
    lines += ["", (
        f"Split: {setup['split']}. Known-item: {counts['known_item']} queries (30-word windows of held-out"
        f" reviews of {setup['known_item_anime']} anime; {setup['held_out_reviews']} reviews held out of the index"
        f" for both splits, seed {setup['seed']}); MAL labels: {counts['labels']} queries; long tail:"
        f" {counts['long_tail']} hand-written queries. Means with 95 % bootstrap intervals"
        f" ({setup['resamples']} resamples of the queries; of the anime for the macro mean)."
    )]
    if any(report.get("vs_count", {}).get(p) for p in ("known_item", "labels")):
        lines += ["", "Paired difference to `count` (same queries, same resamples; 95 % interval):", "",
                  "| aggregation | " + " | ".join(title for _, _, title in DIFF_COLUMNS) + " |",
                  "|" + "---|" * (len(DIFF_COLUMNS) + 1)]
        for name in names:
            if name == "count":
                continue
            label = f"**{name}** (default)" if name == default else name
            lines.append(f"| {label} | " + " | ".join(_diff_cell(report, p, name, k) for p, k, _ in DIFF_COLUMNS)
                         + " |")
    evidence = report.get("negative_evidence")
    if evidence:
        lines += ["", (
            f"Evidence from negative reviews (score ≤ 4 or Not Recommended), share of the snippets shown for the"
            f" top {evidence.get('results_per_query', 10)} results of the {evidence['queries']} label and"
            " hand-written queries:"
            f" {_share(evidence['verdict_ignored'])} with the verdict ignored,"
            f" {_share(evidence['settings'])} with these settings; `similar` of every anime:"
            f" {_share(evidence['similar_verdict_ignored'])} → {_share(evidence['similar_settings'])}."
        )]
    sim = report.get("similar")
    if sim and sim.get("anime"):
        d = sim["difference"]
        lines.append(
            f"Similar anime vs MAL user recommendations ({sim['anime']} anime): recall@10"
            f" {sim['centroid']['recall@10']:.3f} [{sim['centroid']['interval'][0]:.2f},"
            f" {sim['centroid']['interval'][1]:.2f}] (review centroids); popularity baseline"
            f" {sim['popularity']['recall@10']:.3f} [{sim['popularity']['interval'][0]:.2f},"
            f" {sim['popularity']['interval'][1]:.2f}]; difference {d['mean']:+.3f}"
            f" [{d['low']:+.2f}, {d['high']:+.2f}]."
        )
    return "\n".join(lines)


def plot_report(report: dict, path: str | Path, default: str | None = None) -> Path:
    """Grouped bars with 95 % interval whiskers: each metric of the table, one bar per aggregation (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    default = default or report["setup"].get("settings", {}).get("aggregation")
    names = list(report["known_item"])
    columns = [c for c in TABLE_COLUMNS if c[1] != "hit@1"]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(12, 4.8))
    for i, name in enumerate(names):
        values = [report[part][name].get(key, 0.0) for part, key, _ in columns]
        spans = [report.get("intervals", {}).get(part, {}).get(name, {}).get(key) for part, key, _ in columns]
        errors = [[v - s[0] if s else 0 for v, s in zip(values, spans, strict=True)],
                  [s[1] - v if s else 0 for v, s in zip(values, spans, strict=True)]]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(columns))]
        ax.bar(xs, values, width, yerr=errors, capsize=2, label=f"{name} (default)" if name == default else name,
               edgecolor="black" if name == default else None, linewidth=1.5 if name == default else 0,
               error_kw={"elinewidth": 0.8})
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([title.replace(" ", "\n", 1) for _, _, title in columns], fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(f"Aggregations compared on the {report['setup']['split']} split — {report['setup'].get('model')},"
                 f" top_n={report['setup']['top_n']} (95 % intervals)")
    ax.legend(ncol=len(names), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
