"""GPL stage throughput next to the bare models' throughput on the same hardware, extrapolated to the reference corpus.

For every stage the script runs the real pipeline (``training.gpl``) on a sample of the
store, then times the same model doing only its forward work on the same inputs, already
tokenized and batched (the "bare" rate: what the hardware can do). The ratio shows how much
the pipeline around the model (tokenizing, sorting, shards, I/O, the trainer) costs. The stage
rates are then applied to the reference corpus (163,687 reviews) with the run config's own
settings (passage cap, queries per passage, steps) to estimate a full run.

    # here, CPU: tiny random generator and cross-encoder; small real bi-encoder (offline)
    python benchmarks/gpl_throughput.py --db /tmp/shared.sqlite --models small --passages 150 --steps 10
    # one H100/A100, no hub access needed: random models in the production shapes
    python benchmarks/gpl_throughput.py --db data/processed/mal.sqlite --models shaped --passages 4000 --steps 300
    # one H100/A100 with the hub: the production models of the config
    python benchmarks/gpl_throughput.py --db data/processed/mal.sqlite --models config --passages 4000 --steps 300

    # here, CPU, in about two minutes: everything tiny, to check the script itself
    python benchmarks/gpl_throughput.py --db /tmp/shared.sqlite --models tiny --passages 60 --steps 4 \
        --bare-passages 32 --bare-steps 2 --repeats 1 --device cpu

Prints, in one run, a markdown table (per stage: the bare model's rate, the pipeline's rate, their
ratio, the reference H100 bare rate quoted in issue #13, the full-config work and the projected
minutes), the projected full-config wall time and whether the goals hold (every stage at least 0.7 ×
its bare rate; the full config within 45 minutes). Writes a PNG (``--plot``) and a JSON file next to it.
The projection applies the rates measured in this run to the full config: it is a projection, and the
table says on which hardware the rates were measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_average, markdown_table, plot_path, pyplot  # noqa: E402

from recommender import config as rconfig  # noqa: E402
from training.config import load_config  # noqa: E402

REFERENCE_REVIEWS = 163_687
#: Bare-model rates measured on one H100 in bf16 (issue #13): T5-base generating 3 x 64 tokens at batch 256,
#: cross-encoder MiniLM-L6 at 350 tokens, DistilBERT encoding at 256 tokens, MarginMSE at batch 32.
H100_BARE = {"generate": 147.0, "label": 20_506.0, "encode": 13_795.0, "train": 19.4}
#: The goals: every stage at least this share of its bare rate, the full config within this many minutes.
GOAL_EFFICIENCY = 0.7
GOAL_MINUTES = 45.0
MODEL_SETS = {
    # tiny random generator and cross-encoder, tiny random bi-encoder: the machinery only, fastest
    "tiny": {"base": "tiny:bi-encoder", "generator": "tiny:t5", "retrievers": ["tiny:bi-encoder"],
             "cross_encoder": "tiny:cross-encoder"},
    # as tiny, but the packaged all-MiniLM-L6-v2 (real, 22M parameters) as base and retriever
    "small": {"base": rconfig.FALLBACK_MODEL, "generator": "tiny:t5", "retrievers": [rconfig.FALLBACK_MODEL],
              "cross_encoder": "tiny:cross-encoder"},
    # random weights in the production shapes: T5-base, MiniLM-L6 cross-encoder, DistilBERT-sized bi-encoders
    "shaped": {"base": "tiny:bi-encoder-base", "generator": "tiny:t5-base",
               "retrievers": ["tiny:bi-encoder-base", "tiny:bi-encoder-base"],
               "cross_encoder": "tiny:cross-encoder-l6"},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True, help="review store (sqlite) to sample passages from")
    p.add_argument("--config", default="configs/gpl-full.toml", help="run settings to measure and extrapolate")
    p.add_argument("--models", choices=("config", *MODEL_SETS), default="config",
                   help="config = the config's models (hub or local); tiny/small/shaped = offline random models")
    p.add_argument("--passages", type=int, default=2000, help="passages in the measured run")
    p.add_argument("--steps", type=int, default=200, help="training steps in the measured run")
    p.add_argument("--bare-passages", type=int, default=512, help="passages (and pairs/8) for the bare timings")
    p.add_argument("--bare-steps", type=int, default=50, help="training steps for the bare timing")
    p.add_argument("--repeats", type=int, default=3,
                   help="bare timings are repeated and the best kept (a shared machine's other jobs only slow down)")
    p.add_argument("--reference-reviews", type=int, default=REFERENCE_REVIEWS)
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--workdir", help="run directory (default: a temporary one)")
    p.add_argument("--plot", default="data/benchmarks/gpl_throughput.png")
    return p.parse_args()


# ---- bare model timings ---------------------------------------------------------------------
def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _spread(n_batches: int, budget: int) -> list[int]:
    """Indices of ``budget`` batches spread evenly over ``n_batches`` (long, middle and short ones)."""
    if n_batches <= budget:
        return list(range(n_batches))
    return sorted({int(round(i)) for i in np.linspace(0, n_batches - 1, budget)})


def bare_generate(run, hw, texts: list[str], budget: int) -> float:
    """Passages/s of ``model.generate`` alone on pre-tokenized, length-sorted batches (the stage's settings)."""
    import torch

    from training.gpl import length_order
    from training.models import load_generator

    g = run.generate
    model, tokenizer = load_generator(run, hw)
    order = length_order(tokenizer, texts, g.max_passage_tokens)
    batches = [order[lo:lo + g.batch_size] for lo in range(0, len(order), g.batch_size)]
    chosen = _spread(len(batches), max(1, budget // g.batch_size))
    inputs = []
    for b in chosen:
        enc = tokenizer([texts[i] for i in batches[b]], padding=True, truncation=True,
                        max_length=g.max_passage_tokens, return_tensors="pt")
        enc.pop("token_type_ids", None)
        inputs.append({k: v.to(hw.device) for k, v in enc.items()})
    torch.manual_seed(0)
    with torch.inference_mode():  # warm-up: kernels, allocator
        model.generate(**inputs[0], do_sample=True, top_p=g.top_p, top_k=g.top_k or None, max_new_tokens=4)
    _sync(hw.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for enc in inputs:
            model.generate(**enc, do_sample=True, top_p=g.top_p, top_k=g.top_k or None,
                           max_new_tokens=g.max_query_tokens, num_return_sequences=g.queries_per_passage)
    _sync(hw.device)
    done = sum(len(enc["input_ids"]) for enc in inputs)
    del model
    return done / (time.perf_counter() - t0)


def _bare_forward(module, features: list[dict], device: str) -> float:
    """Seconds for ``module`` to run over pre-tokenized batches, without gradients."""
    import torch

    with torch.inference_mode():
        module(features[0])
        _sync(device)
        t0 = time.perf_counter()
        for feature in features:
            module(feature)
        _sync(device)
    return time.perf_counter() - t0


def _batches(tokenize, texts: list, batch_size: int, budget: int, device: str) -> tuple[list[dict], int]:
    order = np.argsort([-len(str(t)) for t in texts], kind="stable")
    batches = [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]
    chosen = _spread(len(batches), max(1, budget // batch_size))
    features = []
    for b in chosen:
        feature = tokenize([texts[i] for i in batches[b]])
        features.append({k: (v.to(device) if hasattr(v, "to") else v) for k, v in feature.items()})
    return features, sum(len(batches[b]) for b in chosen)


def bare_encode(name: str, run, hw, groups: list[list[str]], batch_size: int) -> float:
    """Texts/s of a bi-encoder's forward pass alone over every text of ``groups`` (length-sorted, pre-tokenized).

    Each group is batched on its own, as mining encodes the passages and the queries separately.
    """
    from training.models import load_bi_encoder

    model = load_bi_encoder(name, run, hw)
    model.eval()
    seconds, count = 0.0, 0
    for texts in groups:
        if texts:
            features, n = _batches(model.preprocess, texts, batch_size, len(texts), hw.device)
            seconds += _bare_forward(model, features, hw.device)
            count += n
    return count / seconds


def bare_cross_encoder(run, hw, pairs: list[tuple[str, str]], budget: int) -> float:
    """Pairs/s of the cross-encoder's forward pass alone."""
    from training.models import load_cross_encoder

    model = load_cross_encoder(run, hw)
    model.eval()
    features, n = _batches(model.preprocess, pairs, run.label.batch_size, budget, hw.device)
    return n / _bare_forward(model, features, hw.device)


def bare_train(run, hw, rows: list[tuple[str, str, str, float]], steps: int) -> float:
    """Steps/s of MarginMSE forward + backward + AdamW on pre-tokenized batches (mixed precision as configured)."""
    import contextlib

    import torch
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss

    from training.models import load_bi_encoder

    model = load_bi_encoder(run.models.base, run, hw, for_training=True)
    model.train()
    loss_fn = MarginMSELoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.train.learning_rate)
    bs = run.train.batch_size
    batches = []
    for s in range(steps + 1):
        chunk = [rows[(s * bs + i) % len(rows)] for i in range(bs)]
        features = [model.preprocess([row[c] for row in chunk]) for c in range(3)]
        features = [{k: (v.to(hw.device) if hasattr(v, "to") else v) for k, v in f.items()} for f in features]
        batches.append((features, torch.tensor([row[3] for row in chunk], device=hw.device)))
    autocast = (torch.autocast("cuda", dtype=hw.dtype) if hw.device == "cuda" and hw.precision != "fp32"
                else contextlib.nullcontext())
    scaler = torch.amp.GradScaler("cuda") if hw.precision == "fp16" else None

    def step(features, labels):
        with autocast:
            loss = loss_fn(features, labels)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(*batches[0])  # warm-up
    _sync(hw.device)
    t0 = time.perf_counter()
    for features, labels in batches[1:]:
        step(features, labels)
    _sync(hw.device)
    return steps / (time.perf_counter() - t0)


def stage_encode_rate(name: str, run, hw, texts: list[str], batch_size: int) -> float:
    """Texts/s of ``Encoder.encode`` (what the index build and the evaluation call), tokenizing included."""
    from recommender.encoder import Encoder
    from training.models import load_bi_encoder

    encoder = Encoder(load_bi_encoder(name, run, hw), name, name)
    encoder.encode(texts[:batch_size], batch_size=batch_size)
    _sync(hw.device)
    t0 = time.perf_counter()
    encoder.encode(texts, batch_size=batch_size)
    _sync(hw.device)
    return len(texts) / (time.perf_counter() - t0)


# ---- extrapolation -------------------------------------------------------------------------
def passages_per_review(db: str, max_seq_length: int, limit: int = 3000) -> float:
    """Passages per review when the store is cut at ``max_seq_length`` with the BERT-uncased tokenizer.

    TAS-B and all-MiniLM-L6-v2 share that vocabulary, so the packaged MiniLM's tokenizer
    counts exactly what the production run would.
    """
    from recommender.chunking import chunk_reviews
    from recommender.encoder import Encoder
    from scraping.store import Store

    encoder = Encoder.load(rconfig.FALLBACK_MODEL, device="cpu")
    encoder.model.max_seq_length = max_seq_length
    with Store.open(db, create=False) as store:
        reviews = [(r.review_id, r.anime_id, r.text) for r in itertools.islice(store.iter_reviews(), limit)
                   if r.text and r.text.strip()]
    chunks = sum(1 for _ in chunk_reviews(reviews, encoder.token_offsets, encoder.tokens_per_chunk,
                                          rconfig.CHUNK_OVERLAP_TOKENS))
    return chunks / max(len(reviews), 1)


def main() -> int:
    args = parse_args()
    import pandas as pd

    from training.gpl import run_gpl
    from training.models import resolve_hardware

    full = load_config(args.config)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gpl-bench-"))
    models = full.models if args.models == "config" else replace(
        full.models, base=MODEL_SETS[args.models]["base"], generator=MODEL_SETS[args.models]["generator"],
        retrievers=tuple(MODEL_SETS[args.models]["retrievers"]), cross_encoder=MODEL_SETS[args.models]["cross_encoder"],
        pooling="auto", similarity="auto")
    run = replace(full, name="bench", output_dir=str(work / "run"), models=models,
                  corpus=replace(full.corpus, db=args.db, sample=args.passages, eval_reviews=0),
                  train=replace(full.train, steps=args.steps, eval_every=args.steps,
                                warmup_steps=min(full.train.warmup_steps, args.steps // 10)),
                  export=replace(full.export, dir=str(work / "model")))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda, but torch sees no CUDA GPU on this machine", file=sys.stderr)
            return 2
    hw = resolve_hardware(run.train.precision, args.device)
    print(f"GPL throughput on {hw.describe()}, {load_average()}; models: {args.models}; run in {work}", flush=True)

    infos = {info["stage"]: info for info in run_gpl(run, until="train", progress=True, device=args.device)}
    run_dir = Path(run.run_dir)
    passages = pd.read_parquet(run_dir / "corpus" / "passages.parquet")
    queries = pd.read_parquet(run_dir / "generate" / "queries.parquet")
    triplets = pd.read_parquet(run_dir / "label" / "triplets.parquet")
    texts = passages["text"].tolist()
    text_of = dict(zip(passages["passage_id"], texts, strict=True))
    query_of = dict(zip(queries["query_id"], queries["query"], strict=True))

    print("timing the bare models ...", flush=True)
    pairs = [(query_of[q], text_of[p]) for q, p in zip(triplets["query_id"], triplets["negative_id"], strict=True)]
    rows = [(query_of[q], text_of[p], text_of[n], float(m)) for q, p, n, m in
            zip(triplets["query_id"], triplets["positive_id"], triplets["negative_id"], triplets["margin"],
                strict=True)]
    mine_texts = texts + queries["query"].tolist()
    # The bare encoders see the same mix of passages and (short) queries as the mining stage, scaled down.
    share = min(1.0, args.bare_passages * 4 / len(mine_texts))
    bare_mix = [texts[: max(1, round(len(texts) * share))], queries["query"].tolist()[: round(len(queries) * share)]]
    bare_passages = texts[: args.bare_passages * 4]
    def best(measure) -> float:
        return max(measure() for _ in range(max(1, args.repeats)))

    bare = {
        "generate": best(lambda: bare_generate(run, hw, texts, args.bare_passages)),
        "mine": np.mean([best(lambda r=r: bare_encode(r, run, hw, bare_mix, run.mine.batch_size))
                         for r in run.models.retrievers]),
        "label": best(lambda: bare_cross_encoder(run, hw, pairs, args.bare_passages * 8)),
        "train": best(lambda: bare_train(run, hw, rows, min(args.bare_steps, args.steps))),
        "encode": best(lambda: bare_encode(run.models.base, run, hw, [bare_passages], rconfig.ENCODE_BATCH_SIZE * 4)),
    }
    n_retrievers = len(run.models.retrievers)
    pipeline = {
        "generate": infos["generate"]["items"] / infos["generate"]["seconds"],
        "mine": n_retrievers * len(mine_texts) / infos["mine"]["seconds"],
        "label": infos["label"]["items"] / infos["label"]["seconds"],
        "train": infos["train"]["items"] / infos["train"]["seconds"],
        "encode": best(lambda: stage_encode_rate(run.models.base, run, hw, bare_passages,
                                                 rconfig.ENCODE_BATCH_SIZE * 4)),
    }

    # Reference-size work under the full config's own settings.
    ppr = passages_per_review(args.db, full.train.max_seq_length)
    all_passages = args.reference_reviews * ppr
    ref_passages = min(all_passages, full.corpus.sample) if full.corpus.sample else all_passages
    queries_per_passage = len(queries) / len(passages)
    triplets_per_query = len(triplets) / len(queries)
    pairs_per_triplet = infos["label"]["items"] / len(triplets)
    ref_queries = ref_passages * queries_per_passage
    ref_triplets = ref_queries * triplets_per_query
    # Each evaluation embeds the held-out documents (half the evaluation reviews) and asks the selection
    # queries (a quarter); the before/after report at the end does both models once on the report queries.
    documents, split_queries = full.corpus.eval_reviews / 2 * ppr, full.corpus.eval_reviews / 4
    n_evals = full.train.steps // full.train.eval_every + 1
    eval_texts_total = n_evals * (documents + split_queries) + 2 * (documents + split_queries)
    work_units = {
        "generate": (ref_passages, "passages"),
        "mine": (len(full.models.retrievers) * (ref_passages + ref_queries), "texts"),
        "label": (ref_triplets * pairs_per_triplet, "pairs"),
        "train": (full.train.steps, "steps"),
        "encode": (eval_texts_total, "texts (evaluations)"),
    }
    table, results = [], {}
    for stage in ("generate", "mine", "label", "train", "encode"):
        amount, unit = work_units[stage]
        seconds = amount / pipeline[stage]
        results[stage] = {"bare_rate": bare[stage], "pipeline_rate": pipeline[stage],
                          "efficiency": pipeline[stage] / bare[stage], "reference_work": amount, "unit": unit,
                          "reference_minutes": seconds / 60}
        reference = H100_BARE.get(stage)
        table.append((stage, f"{bare[stage]:.3g}", f"{pipeline[stage]:.3g}", f"{pipeline[stage] / bare[stage]:.0%}",
                      f"{reference:,.1f}".removesuffix(".0") if reference else "–", f"{amount:,.0f} {unit}",
                      f"{seconds / 60:.1f}"))
    total = sum(r["reference_minutes"] for r in results.values())
    index_minutes = all_passages / pipeline["encode"] / 60
    print()
    print(f"hardware: {hw.describe()}; models: {args.models}; {load_average()}")
    print(f"measured run: {len(passages)} passages, {len(queries)} queries, {len(triplets)} triplets, "
          f"{args.steps} steps; reference: {args.reference_reviews:,} reviews x {ppr:.2f} passages/review "
          f"at {full.train.max_seq_length} tokens = {all_passages:,.0f} passages, of which {ref_passages:,.0f} "
          f"used ({args.config})")
    print(markdown_table(("stage", "bare model /s", "pipeline /s", "pipeline/bare", "H100 bare /s (issue #13)",
                          "full-config work", "projected minutes"), table))
    print(f"projected full-config wall time (generate + mine + label + train + evaluations) from the rates "
          f"measured in this run on {hw.describe()}: {total:.1f} min = {total / 60:.2f} h; "
          f"index build afterwards: {index_minutes:.1f} min")
    slow = [stage for stage, r in results.items() if r["efficiency"] < GOAL_EFFICIENCY]
    print(f"goal every stage >= {GOAL_EFFICIENCY:.0%} of its bare rate: "
          + ("met" if not slow else "NOT met by " + ", ".join(slow))
          + f"; goal full config <= {GOAL_MINUTES:.0f} min: {'met' if total <= GOAL_MINUTES else 'NOT met'}"
          + ("" if hw.device == "cuda" else " (measured on a CPU: the goals are stated for one H100)"))
    units = {"generate": "passages", "mine": "texts encoded", "label": "pairs", "train": "steps",
             "encode": "texts (Encoder.encode)"}
    print("units: " + "; ".join(f"{k} = {v}" for k, v in units.items()))

    out = plot_path(args.plot)
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(results)
    left.bar(names, [results[n]["efficiency"] * 100 for n in names], color="tab:blue")
    left.axhline(70, color="grey", linestyle=":", label="70 % target")
    left.set_ylabel("pipeline rate / bare model rate (%)")
    left.set_title("stage efficiency")
    left.legend()
    right.bar(names, [results[n]["reference_minutes"] for n in names], color="tab:orange")
    right.set_ylabel("minutes")
    right.set_title(f"extrapolated to {args.reference_reviews:,} reviews: {total:.0f} min")
    fig.suptitle(f"GPL throughput, {hw.describe()}, models: {args.models}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    payload = {"hardware": hw.describe(), "models": args.models, "load": load_average(), "config": args.config,
               "measured": {"passages": len(passages), "queries": len(queries), "triplets": len(triplets),
                            "steps": args.steps}, "passages_per_review": ppr, "stages": results,
               "total_minutes": total, "index_build_minutes": index_minutes, "h100_bare_reference": H100_BARE,
               "goals": {"efficiency": GOAL_EFFICIENCY, "minutes": GOAL_MINUTES, "stages_below": slow,
                         "minutes_met": total <= GOAL_MINUTES}}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=float))
    print(f"plot: {out}; data: {out.with_suffix('.json')}")
    return 0 if all(math.isfinite(r["pipeline_rate"]) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
