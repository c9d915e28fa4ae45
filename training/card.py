"""The model card (README.md) of an exported GPL model: what it was adapted from, on what, how long, how well."""

from __future__ import annotations

from training.config import RunConfig

_CITATION = """@inproceedings{wang-etal-2022-gpl,
  title = "{GPL}: Generative Pseudo Labeling for Unsupervised Domain Adaptation of Dense Retrieval",
  author = "Wang, Kexin and Thakur, Nandan and Reimers, Nils and Gurevych, Iryna",
  booktitle = "Proceedings of NAACL 2022",
  year = "2022",
  url = "https://arxiv.org/abs/2112.07577"
}"""


def _metric_row(label: str, row: dict | None) -> str:
    if not row:
        return f"| {label} | – | – | – | – |"
    return (f"| {label} (step {row['step']}) | {row['queries']} | {row['hit@1']:.3f} | {row['hit@10']:.3f} "
            f"| {row['mrr@10']:.3f} |")


def _report_lines(report: dict | None, best_step, published: bool) -> list[str]:
    """The before/after table of the report queries with 95 % intervals, and what it decided."""
    if not report:
        return ["No report queries were held out (`corpus.eval_reviews = 0`): nothing shows this model beats its",
                "base model, so it was not published as the project's default encoder.", ""]
    b, a, d = report["before"], report["after"], report["difference"]
    lines = [
        f"Report set: {report['queries']} queries from {report['anime']} anime that neither training nor the",
        f"checkpoint choice saw; both models read {report['max_seq_length']} tokens. Intervals: 95 % paired",
        f"bootstrap over anime ({report['resamples']:,} resamples).",
        "",
        "| model | queries | hit@1 | hit@10 | MRR@10 [95 % interval] |",
        "|---|---:|---:|---:|---|",
        f"| before (base model) | {b['queries']} | {b['hit@1']:.3f} | {b['hit@10']:.3f} | {b['mrr@10']:.3f} "
        f"[{b['interval'][0]:.3f}, {b['interval'][1]:.3f}] |",
        f"| after (step {best_step}) | {a['queries']} | {a['hit@1']:.3f} | {a['hit@10']:.3f} | {a['mrr@10']:.3f} "
        f"[{a['interval'][0]:.3f}, {a['interval'][1]:.3f}] |",
        f"| difference | | | | {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] |",
        "",
    ]
    if report["beats_base"]:
        lines += ["The adapted model beats its base model beyond noise (the difference's interval is above 0).", ""]
    else:
        lines += ["**The adapted model does not beat its base model beyond noise on these queries.**"
                  + (" It was published only because `--force-export` asked for it; the project does not pick it as "
                     "its default encoder." if published else " It was not published: prefer the base model."), ""]
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def model_card(run: RunConfig, infos: dict[str, dict], encoder, published: bool = True) -> str:
    """Markdown model card with Hugging Face front matter.

    Args:
        run: the run configuration.
        infos: done-markers of the corpus … train stages.
        encoder: the exported model wrapped as a :class:`recommender.encoder.Encoder` (pooling, similarity, length).
        published: whether the model went to ``export.dir`` (else it stays in the run folder).
    """
    corpus, generate = infos.get("corpus", {}), infos.get("generate", {})
    mine, label, train = infos.get("mine", {}), infos.get("label", {}), infos.get("train", {})
    total = sum(float(info.get("seconds") or 0) for info in infos.values())
    stage_rows = "\n".join(
        f"| {stage} | {info.get('items', '–')} {info.get('unit', '')} | {float(info.get('seconds') or 0):.1f} s "
        f"| {info.get('rate') or '–'} | {info.get('hardware', '–')} |"
        for stage, info in infos.items() if info)
    before, best = train.get("before"), train.get("best")
    report = train.get("report")
    lines = [
        "---",
        "library_name: sentence-transformers",
        f"base_model: {run.models.base}",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, gpl, domain-adaptation, anime, reviews]",
        f"gpl_beats_base: {'true' if report and report.get('beats_base') else 'false'}",
        "---",
        "",
        f"# {run.model_name}",
        "",
        f"`{run.models.base}` adapted to MyAnimeList user reviews with GPL (Generative Pseudo Labeling,",
        "Wang et al., NAACL 2022, arXiv:2112.07577), by `python -m training gpl` of this project.",
        "",
        "## Model",
        "",
        f"- base model: `{run.models.base}`",
        f"- pooling: `{encoder.pooling}`, similarity: `{encoder.similarity}`, dimension {encoder.dim}",
        f"- max_seq_length: {encoder.max_seq_length} tokens. `python -m recommender build` chunks reviews into "
        f"windows of this model's own max_seq_length ({encoder.tokens_per_chunk} text tokens), the same windows "
        "GPL trained on.",
        "",
        "## Data",
        "",
        f"- reviews: {corpus.get('train_reviews', '–')} used for training passages; "
        f"{corpus.get('held_out_anime', '–')} anime held out of training whole, "
        f"{corpus.get('eval_reviews', '–')} of their reviews used for evaluation (store `{run.corpus.db}`)",
        f"- passages: {corpus.get('passages', '–')} (duplicates dropped: {corpus.get('duplicates_dropped', '–')}, "
        f"left out by the sample cap: {corpus.get('sampled_out', '–')})",
        f"- generated queries: {generate.get('queries', '–')} by `{run.models.generator}` "
        f"({run.generate.queries_per_passage} per passage)",
        f"- hard negatives: {mine.get('triplets', '–')} triplets from "
        + ", ".join(f"`{r}`" for r in run.models.retrievers),
        f"- margins: `{run.models.cross_encoder}` (raw logits), mean {label.get('margin_mean', '–')}, "
        f"std {label.get('margin_std', '–')}",
        "",
        "## Training",
        "",
        f"- MarginMSE, {train.get('steps', '–')} steps of batch {run.train.batch_size}, learning rate "
        f"{run.train.learning_rate}, {run.train.warmup_steps} warm-up steps, precision {run.train.precision}",
        f"- best checkpoint: step {train.get('best_step', '–')} (known-item MRR@10 of the selection queries, "
        f"evaluated every {run.train.eval_every} steps)",
        f"- total time: {_duration(total)}",
        "",
        "| stage | items | time | items/s | hardware |",
        "|---|---:|---:|---:|---|",
        stage_rows,
        "",
        "## Evaluation (known-item, anime held out of training)",
        "",
        "A 30-word window of a held-out review must find its anime among the other held-out reviews",
        "(`recommender.evaluate`, index built in memory). The held-out anime are split in two: the",
        "*selection* queries pick the checkpoint, the *report* queries judge it.",
        "",
        *_report_lines(report, train.get("best_step"), published),
        "Selection queries (the checkpoint choice; optimistic for the chosen step):",
        "",
        "| model | queries | hit@1 | hit@10 | MRR@10 |",
        "|---|---:|---:|---:|---:|",
        _metric_row("before (base model)", before),
        _metric_row("after (best checkpoint)", best),
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
