"""GPL domain adaptation, stage by stage, on sentence-transformers 6.

Generative Pseudo Labeling (Wang et al., NAACL 2022, arXiv:2112.07577):

1. ``generate``: a T5 query generator writes queries for every passage (batched, longest first).
2. ``mine``: dense retrievers find passages close to each query: hard negatives
   (``sentence_transformers.util.mine_hard_negatives``).
3. ``label``: a cross-encoder scores (query, positive) and (query, negative); the raw-logit
   difference is the pseudo label (``CrossEncoder.predict`` with an identity activation).
4. ``train``: the bi-encoder learns those margins with ``MarginMSELoss``
   (``SentenceTransformerTrainer``), evaluated every N steps; the best checkpoint is kept.
5. ``export``: the best model, with its own pooling and similarity, as a model directory that
   ``python -m recommender build --model DIR`` uses directly.

A ``corpus`` stage first cuts the passages from the review store the way the index does.
Every stage writes its output and a done-marker with the config hash into the run
directory (see :mod:`training.rundir`): finished stages are skipped, and a killed stage
resumes from its last saved shard (generate, label), retriever (mine) or checkpoint (train).
The same code runs on a GPU (bf16 where supported) or on the CPU, as one process or as N
under ``torchrun`` (:mod:`training.dist`: shards split across ranks, DDP training, rank 0
writes). Export publishes the model only when it beat the base model on held-out queries by
more than the noise (:mod:`training.evalcurve`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recommender.encoder import Encoder
from recommender.errors import ModelNotFoundError
from scraping.store import Store
from training import corpus as corpus_mod
from training import dist
from training.config import STAGES, RunConfig
from training.dist import Ranks
from training.errors import StageError
from training.mirror import Mirror
from training.models import (
    Hardware,
    clip_to_tokens,
    dataloader_workers,
    load_bi_encoder,
    load_cross_encoder,
    load_generator,
    mining_devices,
    resolve_hardware,
    resolve_name,
)
from training.rundir import RunDir, write_json, write_parquet

log = logging.getLogger(__name__)

QUERY_COLUMNS = ["query_id", "passage_id", "query"]
TRIPLET_COLUMNS = ["query_id", "positive_id", "negative_id", "positive_score", "negative_score", "margin"]


# ---- shared helpers -------------------------------------------------------------------------
def _read(run_dir: RunDir, stage: str, name: str) -> pd.DataFrame:
    path = run_dir.stage(stage) / name
    if not path.exists():
        raise StageError(f"{path} is missing: run the {stage} stage first")
    return pd.read_parquet(path)


def _shard_seed(seed: int, shard_no: int) -> int:
    return (seed * 1_000_003 + shard_no) % (2**31)


def _shards(n: int, size: int) -> list[range]:
    return [range(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _shard_path(shard_dir: Path, shard_no: int) -> Path:
    return shard_dir / f"shard-{shard_no:05d}.parquet"


def run_shards(ranks: Ranks, spans: Sequence[range], shard_dir: Path,
               compute: Callable[[int, range], tuple[pd.DataFrame, int]], bar) -> float:
    """Compute and save this rank's missing shards (shard k on rank k mod N), then wait for the other ranks.

    A shard already on disk is skipped, so a killed stage resumes where it stopped. Every
    shard has its own random seed, so a shard's content does not depend on which rank made it.

    Returns:
        The work done in this invocation by all ranks together (what ``compute`` counted).
    """
    done_here, error = 0, None
    try:
        for shard_no, span in enumerate(spans):
            if not ranks.owns(shard_no):
                continue
            path = _shard_path(shard_dir, shard_no)
            if not path.exists():
                frame, items = compute(shard_no, span)
                write_parquet(frame, path)
                done_here += items
            bar.update(len(span))
    except Exception as exc:
        if not ranks.distributed:
            raise
        error = f"rank {ranks.rank}: {exc.__class__.__name__}: {exc}"
    bar.close()
    dist.agree(ranks, error)
    return dist.total(ranks, done_here)


def _read_shards(shard_dir: Path, count: int) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(_shard_path(shard_dir, n)) for n in range(count)], ignore_index=True)


def clean_query(text: str) -> str:
    """One line of generated text, whitespace collapsed."""
    return " ".join(text.split())


# ---- corpus ---------------------------------------------------------------------------------
REVIEW_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv")


def _store_path(source: str, work: Path, progress: bool) -> Path:
    """The store to read: ``corpus.db`` itself, or a store imported from a review file (``.jsonl``/``.csv``)."""
    path = Path(source)
    if path.suffix.lower() not in REVIEW_FILE_SUFFIXES:
        return path
    from scraping.importers import import_path

    if not path.is_file():
        raise StageError(f"corpus.db: no such review file: {path}")
    store_path = work / "store.sqlite"
    with Store.open(store_path) as store:
        report = import_path(store, path)
    if progress:
        print(f"imported into {store_path}: {report.summary()}", flush=True)
    return store_path


def stage_corpus(run: RunConfig, run_dir: RunDir, hw: Hardware, progress: bool) -> dict:
    """Cut the store's reviews into passages with the base model's tokenizer at the training length."""
    out = run_dir.stage("corpus")
    t0 = time.perf_counter()
    cfg = run.corpus
    db = _store_path(cfg.db, out, progress)
    with Store.open(db, create=False) as store:
        source = store.iter_reviews(cfg.anime_ids or None)
        reviews = [r for r in tqdm(source, desc="reading reviews", unit="review", disable=not progress)
                   if corpus_mod.keep_review(r, cfg)]
    if not reviews:
        raise StageError(f"no reviews in {cfg.db} pass the [corpus] filters")
    try:
        encoder = Encoder.load(resolve_name(run.models.base, run), device="cpu")
    except ModelNotFoundError as exc:
        raise StageError(str(exc)) from None
    encoder.model.max_seq_length = run.train.max_seq_length
    built = corpus_mod.build_corpus(reviews, encoder.token_offsets, encoder.tokens_per_chunk, cfg, run.seed)
    if built.passages.empty:
        raise StageError("the corpus has no passages left after evaluation hold-out, deduplication and sampling")
    write_parquet(built.passages, out / "passages.parquet")
    write_parquet(built.eval_reviews, out / "eval_reviews.parquet")
    seconds = time.perf_counter() - t0
    held = built.eval_reviews
    queries = {split: int(((held["role"] == "query") & (held["split"] == split)).sum()) for split in corpus_mod.SPLITS}
    if 0 < sum(queries.values()) < 1000:
        log.warning("only %d known-item queries (%s): before/after intervals will be wide; raise corpus.eval_reviews",
                    sum(queries.values()), ", ".join(f"{k} {v}" for k, v in queries.items()))
    return {"reviews": len(reviews), "train_reviews": built.reviews_used, "passages": len(built.passages),
            "eval_reviews": len(held), "held_out_anime": built.held_out_anime,
            "eval_queries": queries, "duplicates_dropped": built.duplicates_dropped,
            "sampled_out": built.sampled_out, "tokens_per_passage": encoder.tokens_per_chunk,
            "items": len(reviews), "unit": "review", "seconds": round(seconds, 2),
            "rate": round(len(reviews) / seconds, 2) if seconds else None}


# ---- generate -------------------------------------------------------------------------------
def length_order(tokenizer, texts: Sequence[str], max_tokens: int) -> np.ndarray:
    """Positions of ``texts`` longest first (by truncated token count), so every batch pads little."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_tokens,
                                             add_special_tokens=True)["input_ids"]]
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def generate_queries(model, tokenizer, texts: Sequence[str], *, queries_per_passage: int, max_passage_tokens: int,
                     max_query_tokens: int, top_p: float, top_k: int) -> list[list[str]]:
    """Sampled queries for one batch of passages: ``queries_per_passage`` per passage, in input order."""
    import torch

    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_passage_tokens,
                        return_tensors="pt")
    encoded.pop("token_type_ids", None)  # a BERT-style tokenizer adds them; T5 takes none
    encoded = {key: value.to(model.device) for key, value in encoded.items()}
    with torch.inference_mode():
        output = model.generate(**encoded, do_sample=True, top_p=top_p, top_k=top_k or None,
                                max_new_tokens=max_query_tokens, num_return_sequences=queries_per_passage)
    decoded = tokenizer.batch_decode(output, skip_special_tokens=True)
    q = queries_per_passage
    return [[clean_query(text) for text in decoded[i * q:(i + 1) * q]] for i in range(len(texts))]


def stage_generate(run: RunConfig, run_dir: RunDir, hw: Hardware, progress: bool, ranks: Ranks = dist.SINGLE) -> dict:
    """Write ``queries_per_passage`` queries for every passage, one saved shard at a time, shards split over ranks."""
    import torch

    out = run_dir.stage("generate")
    shard_dir = out / "shards"
    shard_dir.mkdir(exist_ok=True)
    passages = _read(run_dir, "corpus", "passages.parquet")
    texts = passages["text"].tolist()
    ids = passages["passage_id"].to_numpy()
    g = run.generate
    model, tokenizer = load_generator(run, hw)
    order = length_order(tokenizer, texts, g.max_passage_tokens)
    shards = _shards(len(order), g.save_every)
    mine = sum(len(span) for k, span in enumerate(shards) if ranks.owns(k))
    bar = tqdm(total=mine, desc="generate", unit="passage", disable=not (progress and ranks.is_main), smoothing=0.1)
    t0 = time.perf_counter()

    def generate_shard(shard_no: int, span: range) -> tuple[pd.DataFrame, int]:
        # One seed per shard: a resumed run, or another rank, samples exactly what an uninterrupted one would.
        torch.manual_seed(_shard_seed(run.seed, shard_no))
        rows = []
        positions = order[span.start:span.stop]
        for lo in range(0, len(positions), g.batch_size):
            batch = positions[lo:lo + g.batch_size]
            queries = generate_queries(model, tokenizer, [texts[i] for i in batch],
                                       queries_per_passage=g.queries_per_passage,
                                       max_passage_tokens=g.max_passage_tokens, max_query_tokens=g.max_query_tokens,
                                       top_p=g.top_p, top_k=g.top_k)
            for position, written in zip(batch, queries, strict=True):
                for query in dict.fromkeys(q for q in written if q):  # drop empty and repeated queries
                    rows.append((int(ids[position]), query))
        return pd.DataFrame(rows, columns=["passage_id", "query"]), len(positions)

    generated_here = run_shards(ranks, shards, shard_dir, generate_shard, bar)
    seconds = time.perf_counter() - t0

    def merge() -> dict:
        queries = _read_shards(shard_dir, len(shards)).sort_values(["passage_id"], kind="stable", ignore_index=True)
        if queries.empty:
            raise StageError("the generator wrote no usable query")
        queries.insert(0, "query_id", np.arange(len(queries), dtype=np.int64))
        write_parquet(queries[QUERY_COLUMNS], out / "queries.parquet")
        return {"passages": len(texts), "queries": len(queries), "items": generated_here, "unit": "passage",
                "resumed": len(texts) - generated_here, "processes": ranks.world, "seconds": round(seconds, 2),
                "rate": round(generated_here / seconds, 2) if seconds and generated_here else None}

    return dist.on_main(ranks, merge)


# ---- mine -----------------------------------------------------------------------------------
def interleave_negatives(per_retriever: Sequence[dict[int, list[int]]], query_ids: Sequence[int],
                         per_query: int) -> list[tuple[int, int]]:
    """``(query_id, negative_id)`` pairs: up to ``per_query`` distinct negatives per query, taken in turn
    from each retriever's picks, starting with a different retriever for consecutive queries so every
    retriever contributes equally (GPL samples its negatives from the union of the retrievers' results).
    """
    pairs = []
    n = len(per_retriever)
    for query_id in query_ids:
        lists = [per_retriever[(query_id + k) % n].get(query_id, []) for k in range(n)]
        chosen: list[int] = []
        for depth in range(max((len(items) for items in lists), default=0)):
            for items in lists:
                if depth < len(items) and items[depth] not in chosen:
                    chosen.append(items[depth])
        pairs.extend((query_id, negative) for negative in chosen[:per_query])
    return pairs


def _mine_one(retriever: str, index: int, queries: pd.DataFrame, passages: pd.DataFrame, run: RunConfig,
              run_dir: RunDir, hw: Hardware, progress: bool) -> pd.DataFrame:
    """Negatives of one retriever: ``negatives_per_query`` random picks from its top ``top_k`` (positives excluded)."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    model = load_bi_encoder(retriever, run, hw)
    # Each retriever has its own cache: sentence-transformers names cache files after the model's hub
    # name, which is empty for a local folder, so a shared folder would hand one retriever another's embeddings.
    cache = run_dir.stage("mine") / "cache" / f"retriever-{index}"
    texts = passages["text"].tolist()
    text_of = dict(zip(passages["passage_id"].tolist(), texts, strict=True))
    id_of = {text: pid for pid, text in text_of.items()}
    dataset = Dataset.from_dict({"query": queries["query"].tolist(),
                                 "positive": [text_of[pid] for pid in queries["passage_id"].tolist()]})
    top_k = min(run.mine.top_k, max(len(texts) - 1, 1))
    per_query = min(run.mine.negatives_per_query, top_k)
    random.seed(_shard_seed(run.seed, index))  # mine_hard_negatives samples with the random module
    mined = mine_hard_negatives(
        dataset, model, anchor_column_name="query", positive_column_name="positive", corpus=texts,
        range_max=top_k, num_negatives=per_query, sampling_strategy="random", output_format="n-tuple",
        batch_size=run.mine.batch_size, faiss_batch_size=max(64, int(2e8 // max(len(texts), 1))),
        # On a GPU machine FAISS (faiss-gpu from the [gpu] extra) searches on the GPU; without it the
        # top-k runs as CPU matrix products, the same work either way.
        use_faiss=hw.device == "cuda", use_multi_process=mining_devices(hw.device), cache_folder=str(cache),
        verbose=progress,
    ).to_pandas()
    query_ids: dict[tuple[str, int], int] = {
        (q, p): qid for qid, q, p in zip(queries["query_id"], queries["query"], queries["passage_id"], strict=True)}
    negative_columns = [c for c in mined.columns if c.startswith("negative")]
    rows = []
    for record in mined.itertuples(index=False):
        record = record._asdict()
        qid = query_ids.get((record["query"], id_of[record["positive"]]))
        if qid is not None:
            rows.append((qid, [id_of[record[c]] for c in negative_columns]))
    return pd.DataFrame(rows, columns=["query_id", "negative_ids"])


def stage_mine(run: RunConfig, run_dir: RunDir, hw: Hardware, progress: bool) -> dict:
    """Hard negatives for every generated query from each retriever, merged round-robin."""
    out = run_dir.stage("mine")
    queries = _read(run_dir, "generate", "queries.parquet")
    passages = _read(run_dir, "corpus", "passages.parquet")
    if len(passages) < 2:
        raise StageError("mining needs at least two passages")
    t0, mined_here = time.perf_counter(), 0
    per_retriever = []
    for index, retriever in enumerate(run.models.retrievers):
        path = out / f"retriever-{index}.parquet"
        if not path.exists():
            if progress:
                print(f"mining with {retriever} ({index + 1}/{len(run.models.retrievers)})", flush=True)
            write_parquet(_mine_one(retriever, index, queries, passages, run, run_dir, hw, progress), path)
            mined_here += len(queries)
        frame = pd.read_parquet(path)
        per_retriever.append({int(q): [int(n) for n in negs] for q, negs in
                              zip(frame["query_id"], frame["negative_ids"], strict=True)})
    pairs = interleave_negatives(per_retriever, queries["query_id"].tolist(), run.mine.negatives_per_query)
    if not pairs:
        raise StageError("no hard negatives found; the corpus may be too small")
    write_parquet(pd.DataFrame(pairs, columns=["query_id", "negative_id"]), out / "negatives.parquet")
    seconds = time.perf_counter() - t0
    return {"queries": len(queries), "triplets": len(pairs), "retrievers": len(run.models.retrievers),
            "items": mined_here, "unit": "query (per retriever)", "seconds": round(seconds, 2),
            "rate": round(mined_here / seconds, 2) if seconds and mined_here else None}


# ---- label ----------------------------------------------------------------------------------
def score_pairs(cross_encoder, pairs: Sequence[tuple[str, str]], batch_size: int) -> np.ndarray:
    """Raw cross-encoder logits (no sigmoid: margins of logits are GPL's labels)."""
    import torch

    if not pairs:
        return np.zeros(0, dtype=np.float32)
    scores = cross_encoder.predict(list(pairs), batch_size=batch_size, activation_fn=torch.nn.Identity(),
                                   convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(scores, dtype=np.float32).reshape(-1)


def label_triplets(cross_encoder, triplets: pd.DataFrame, query_text: dict[int, str], passage_text: dict[int, str],
                   batch_size: int) -> pd.DataFrame:
    """Margins for ``(query_id, positive_id, negative_id)`` rows; each (query, positive) pair is scored once."""
    query_ids = triplets["query_id"].tolist()
    positive_keys = list(dict.fromkeys(zip(query_ids, triplets["positive_id"].tolist(), strict=True)))
    negative_keys = list(zip(query_ids, triplets["negative_id"].tolist(), strict=True))
    pairs = [(query_text[q], passage_text[p]) for q, p in positive_keys + negative_keys]
    scores = score_pairs(cross_encoder, pairs, batch_size)
    positive_score = dict(zip(positive_keys, scores[:len(positive_keys)].tolist(), strict=True))
    out = triplets[["query_id", "positive_id", "negative_id"]].copy()
    out["positive_score"] = np.array(
        [positive_score[k] for k in zip(query_ids, out["positive_id"].tolist(), strict=True)], dtype=np.float32)
    out["negative_score"] = scores[len(positive_keys):]
    out["margin"] = out["positive_score"] - out["negative_score"]
    return out


def stage_label(run: RunConfig, run_dir: RunDir, hw: Hardware, progress: bool, ranks: Ranks = dist.SINGLE) -> dict:
    """Cross-encoder margins for every (query, positive, negative) triplet, one saved shard at a time.

    Query and passage are each cut to ``train.max_seq_length`` tokens of the cross-encoder's
    tokenizer, and the pair is read whole up to the cross-encoder's own limit (GPL's recipe).
    """
    out = run_dir.stage("label")
    shard_dir = out / "shards"
    shard_dir.mkdir(exist_ok=True)
    queries = _read(run_dir, "generate", "queries.parquet")
    passages = _read(run_dir, "corpus", "passages.parquet")
    negatives = _read(run_dir, "mine", "negatives.parquet")
    triplets = negatives.merge(queries[["query_id", "passage_id"]], on="query_id").rename(
        columns={"passage_id": "positive_id"})[["query_id", "positive_id", "negative_id"]]
    cross_encoder = load_cross_encoder(run, hw)
    limit = run.train.max_seq_length
    query_text = dict(zip(queries["query_id"].tolist(),
                          clip_to_tokens(cross_encoder.tokenizer, queries["query"].tolist(), limit), strict=True))
    passage_text = dict(zip(passages["passage_id"].tolist(),
                            clip_to_tokens(cross_encoder.tokenizer, passages["text"].tolist(), limit), strict=True))
    shards = _shards(len(triplets), run.label.save_every)
    mine = sum(len(span) for k, span in enumerate(shards) if ranks.owns(k))
    bar = tqdm(total=mine, desc="label", unit="triplet", disable=not (progress and ranks.is_main))
    t0 = time.perf_counter()

    def label_shard(shard_no: int, span: range) -> tuple[pd.DataFrame, int]:
        part = triplets.iloc[span.start:span.stop]
        labelled = label_triplets(cross_encoder, part, query_text, passage_text, run.label.batch_size)
        return labelled, len(part) + part[["query_id", "positive_id"]].drop_duplicates().shape[0]

    pairs_here = run_shards(ranks, shards, shard_dir, label_shard, bar)
    seconds = time.perf_counter() - t0

    def merge() -> dict:
        labelled = _read_shards(shard_dir, len(shards))
        write_parquet(labelled[TRIPLET_COLUMNS], out / "triplets.parquet")
        margins = labelled["margin"].to_numpy()
        return {"triplets": len(labelled), "pairs_scored": pairs_here, "margin_mean": round(float(margins.mean()), 4),
                "margin_std": round(float(margins.std()), 4), "items": pairs_here, "unit": "pair",
                "processes": ranks.world, "seconds": round(seconds, 2),
                "rate": round(pairs_here / seconds, 2) if seconds and pairs_here else None}

    return dist.on_main(ranks, merge)


# ---- train ----------------------------------------------------------------------------------
def training_rows(triplets: pd.DataFrame, steps: int, batch_size: int, seed: int) -> pd.DataFrame:
    """The triplets training will see: shuffled by seed, capped at ``steps × batch_size`` (one pass)."""
    shuffled = triplets.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return shuffled.iloc[: steps * batch_size]


def latest_checkpoint(directory: Path) -> Path | None:
    """The highest-step ``checkpoint-N`` folder the trainer finished writing, or None."""
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


def _eval_set(run: RunConfig, run_dir: RunDir):
    from training import evalcurve

    path = run_dir.stage("corpus") / "eval_reviews.parquet"
    if not path.exists():
        return None
    return evalcurve.eval_set_from_frame(pd.read_parquet(path), run.seed, run.train.eval_queries)


def stage_train(run: RunConfig, run_dir: RunDir, hw: Hardware, progress: bool, ranks: Ranks = dist.SINGLE,
                mirror: Mirror | None = None) -> dict:
    """MarginMSE training; the selection queries pick the best checkpoint, the report queries judge it.

    Under torchrun every rank trains (DDP through ``SentenceTransformerTrainer``), each on
    ``batch_size / N`` examples of every step, so a step means the same as in one process;
    rank 0 alone writes checkpoints, the curve, the best model and the report.
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss
    from sentence_transformers.util import pairwise_cos_sim, pairwise_dot_score

    from training import evalcurve

    out = run_dir.stage("train")
    t = run.train
    if t.batch_size % ranks.world:
        raise StageError(f"train.batch_size {t.batch_size} must be a multiple of the {ranks.world} processes")
    triplets = _read(run_dir, "label", "triplets.parquet")
    queries = _read(run_dir, "generate", "queries.parquet")
    passages = _read(run_dir, "corpus", "passages.parquet")
    rows = training_rows(triplets, t.steps, t.batch_size, run.seed)
    query_text = dict(zip(queries["query_id"].tolist(), queries["query"].tolist(), strict=True))
    passage_text = dict(zip(passages["passage_id"].tolist(), passages["text"].tolist(), strict=True))
    dataset = Dataset.from_dict({
        "query": [query_text[q] for q in rows["query_id"].tolist()],
        "positive": [passage_text[p] for p in rows["positive_id"].tolist()],
        "negative": [passage_text[p] for p in rows["negative_id"].tolist()],
        "label": rows["margin"].astype(np.float32).tolist(),
    })
    model = load_bi_encoder(run.models.base, run, hw, for_training=True)
    similarity = model.similarity_fn_name
    loss = MarginMSELoss(model, similarity_fct=pairwise_dot_score if similarity == "dot" else pairwise_cos_sim)

    eval_set = _eval_set(run, run_dir)
    curve_path = out / "eval_curve.csv"
    autocast = hw.dtype if hw.precision != "fp32" else None
    evaluator = None
    if eval_set is not None and eval_set.selection:
        evaluator = evalcurve.KnownItemEvaluator(eval_set, curve_path, autocast_dtype=autocast)
        if ranks.is_main and not any(row["step"] == 0 for row in evalcurve.read_curve(curve_path)):
            evaluator(model, steps=0)  # the base model on the selection queries: the curve's step 0
    checkpoints = out / "checkpoints"
    workers = dataloader_workers(hw.device, processes=ranks.world)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints), max_steps=t.steps, per_device_train_batch_size=t.batch_size // ranks.world,
        learning_rate=t.learning_rate, warmup_steps=t.warmup_steps, weight_decay=t.weight_decay,
        bf16=hw.precision == "bf16", fp16=hw.precision == "fp16", use_cpu=hw.device == "cpu",
        eval_strategy="steps" if evaluator else "no", eval_steps=t.eval_every if evaluator else None,
        save_strategy="steps", save_steps=t.eval_every, save_total_limit=t.keep_checkpoints,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model=evaluator.metric_for_best_model if evaluator else None, greater_is_better=True,
        logging_steps=max(1, min(t.eval_every, 100)), report_to="none", seed=run.seed, data_seed=run.seed,
        disable_tqdm=not (progress and ranks.is_main), dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0, dataloader_drop_last=len(dataset) > t.batch_size,
        per_device_eval_batch_size=t.batch_size,
    )
    callbacks = [] if mirror is None else [_mirror_callback(mirror, run_dir)]
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         evaluator=evaluator, callbacks=callbacks)
    resume = latest_checkpoint(checkpoints)
    if resume is not None and progress and ranks.is_main:
        print(f"resuming training from {resume.name}", flush=True)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - t0
    steps_here = int(trainer.state.global_step) - (int(resume.name.split("-")[1]) if resume else 0)

    def finish() -> dict:
        best_dir = out / "best"
        best_model = trainer.model
        best_model.max_seq_length = t.max_seq_length
        best_model.save(str(best_dir), create_model_card=False)
        curve = evalcurve.read_curve(curve_path)
        info = {"steps": int(trainer.state.global_step), "steps_run": steps_here, "examples": len(dataset),
                "processes": ranks.world, "similarity": similarity, "pooling": Encoder(best_model, "m", "m").pooling,
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "train_loss": round(float(result.training_loss), 5),
                "items": steps_here, "unit": "step", "seconds": round(seconds, 2),
                "rate": round(steps_here / seconds, 3) if seconds and steps_here else None}
        if curve:
            before = next((row for row in curve if row["step"] == 0), None)
            best = evalcurve.best_row([row for row in curve if row["step"] > 0]) or before
            info.update(before=before, best=best, best_step=best["step"] if best else None)
        report = None
        if eval_set is not None and eval_set.report:
            report = _before_after(run, hw, best_model, eval_set, autocast)
            write_json(out / "report.json", report)
            info["report"] = report
            if progress:
                print(evalcurve.describe_report(report), flush=True)
        if curve:
            evalcurve.plot_curve(curve, out / "eval_curve.png", f"GPL {run.name}: known-item MRR@10 by step",
                                 report=report)
        return info

    return dist.on_main(ranks, finish)


def _mirror_callback(mirror: Mirror, run_dir: RunDir):
    from training.mirror import checkpoint_callback

    return checkpoint_callback(mirror, run_dir)


def _before_after(run: RunConfig, hw: Hardware, adapted, eval_set, autocast) -> dict:
    """The base model (loaded afresh, as training began: same pooling, similarity, max_seq_length) and the adapted
    one on the report queries, with bootstrap intervals."""
    from training import evalcurve

    base = load_bi_encoder(run.models.base, run, hw, for_training=True)
    if base.max_seq_length != adapted.max_seq_length:  # the comparison is only fair at one length
        raise StageError(f"base and adapted models differ in max_seq_length ({base.max_seq_length} vs "
                         f"{adapted.max_seq_length})")
    documents, queries = eval_set.documents, eval_set.report
    before = evalcurve.query_ranks(base, documents, queries, name="base", autocast_dtype=autocast)
    del base
    after = evalcurve.query_ranks(adapted, documents, queries, name="adapted", autocast_dtype=autocast)
    return evalcurve.before_after(before, after, queries, seed=run.seed, max_seq_length=adapted.max_seq_length)


# ---- export ---------------------------------------------------------------------------------
def stage_export(run: RunConfig, run_dir: RunDir, hw: Hardware, progress: bool, force: bool = False,
                 mirror: Mirror | None = None) -> dict:
    """Save the best model with its similarity and a model card, then check the index will read it right.

    The model is published to ``export.dir`` (default ``data/models/<name>``, where the project
    picks its default encoder) only when the train stage's report says it beat the base model
    beyond noise, or with ``force``; otherwise it is written to ``<run>/export/model`` and the
    done-marker says why.
    """
    from sentence_transformers import SentenceTransformer

    from recommender.build import publish_directory
    from training.card import model_card

    best = run_dir.stage("train") / "best"
    if not (best / "modules.json").exists():
        raise StageError(f"{best} is missing: run the train stage first")
    t0 = time.perf_counter()
    model = SentenceTransformer(str(best), device="cpu", local_files_only=True)
    train_info = run_dir.done_info("train") or {}
    similarity = train_info.get("similarity") or model.similarity_fn_name
    model.similarity_fn_name = similarity
    infos = {stage: run_dir.done_info(stage) or {} for stage in STAGES[:-1]}
    report = train_info.get("report")
    beats_base = bool(report and report.get("beats_base"))
    published = beats_base or force
    target = run.export_dir if published else run_dir.stage("export") / "model"
    card = model_card(run, infos, Encoder(model, run.model_name, str(best)), published=published)

    def write(tmp: Path) -> None:
        model.save(str(tmp), create_model_card=False)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        write_json(tmp / "gpl_run.json", {"config": run.to_dict(), "stages": infos, "evaluation": report,
                                          "beats_base": beats_base, "published": published, "forced": force})

    publish_directory(target, write)
    loaded = Encoder.load(str(target), device="cpu")
    checks = {"similarity": (loaded.similarity, similarity),
              "max_seq_length": (loaded.max_seq_length, run.train.max_seq_length)}
    pooling, _ = run.base_pooling_and_similarity()
    if pooling != "auto":
        checks["pooling"] = (loaded.pooling, pooling)
    wrong = {key: pair for key, pair in checks.items() if pair[0] != pair[1]}
    if wrong:
        raise StageError(f"the exported model reads back wrong: {wrong}")
    if mirror is not None:
        mirror.push_model(target)
    if not published:
        reason = ("the adapted model did not beat the base model beyond noise on the report queries" if report
                  else "there was no report set to show the adapted model beats the base model")
        log.warning("not published to %s: %s; written to %s (--force-export publishes it)", run.export_dir, reason,
                    target)
    seconds = time.perf_counter() - t0
    return {"model_dir": str(target.resolve()), "published": published, "beats_base": beats_base, "forced": force,
            "publish_dir": str(run.export_dir.resolve()), "similarity": loaded.similarity, "pooling": loaded.pooling,
            "max_seq_length": loaded.max_seq_length, "items": 1, "unit": "model", "seconds": round(seconds, 2),
            "rate": None}


# ---- the pipeline ---------------------------------------------------------------------------
STAGE_FUNCTIONS: dict[str, Callable[..., dict]] = {
    "corpus": stage_corpus, "generate": stage_generate, "mine": stage_mine, "label": stage_label,
    "train": stage_train, "export": stage_export,
}


def summary_line(info: dict) -> str:
    """One human line about a finished stage."""
    rate = f", {info['rate']:.3g} {info.get('unit', 'item')}/s" if info.get("rate") else ""
    extra = {k: v for k, v in info.items() if k in ("passages", "queries", "triplets", "steps", "eval_reviews",
                                                    "held_out_anime", "model_dir", "best_step", "published")}
    details = ", ".join(f"{k}={v}" for k, v in extra.items())
    if info.get("before") and info.get("best"):
        details += (f", selection MRR@10 {info['before']['mrr@10']:.3f} (base) -> {info['best']['mrr@10']:.3f} "
                    f"(step {info['best']['step']})")
    skipped = " (already done)" if info.get("skipped") else ""
    return f"{info['stage']:>8}: {details} in {info.get('seconds', 0):.1f} s{rate}{skipped}"


def closing_line(run: RunConfig, infos: Sequence[dict]) -> str:
    """The run's last line: the before/after verdict with its interval, and where the model went."""
    from training.evalcurve import describe_report

    by_stage = {info["stage"]: info for info in infos}
    if "train" not in by_stage:
        return f"GPL {run.name}: stopped after the {infos[-1]['stage']} stage" if infos else f"GPL {run.name}"
    report = by_stage["train"].get("report")
    verdict = describe_report(report) if report else "no report queries (corpus.eval_reviews = 0): nothing to judge"
    export = by_stage.get("export")
    if export is None:
        where = "not exported yet (--stage export)"
    elif export.get("published"):
        where = f"published to {export['model_dir']}" + (" (forced)" if export.get("forced") else "")
    else:
        where = (f"NOT published to {export['publish_dir']}; written to {export['model_dir']} "
                 "(--force-export publishes it anyway)")
    return f"GPL {run.name}: {verdict}; model {where}"


#: Stages every rank works on under torchrun; the others run on rank 0 while the rest wait.
SHARED_STAGES = ("generate", "label", "train")


def _run_stage(stage: str, run: RunConfig, run_dir: RunDir, hw: Hardware, progress: bool, ranks: Ranks,
               mirror: Mirror | None, force_export: bool) -> dict:
    function = STAGE_FUNCTIONS[stage]
    if stage == "train":
        return function(run, run_dir, hw, progress, ranks, mirror)
    if stage in SHARED_STAGES:
        return function(run, run_dir, hw, progress, ranks)
    if stage == "export":
        return dist.on_main(ranks, lambda: function(run, run_dir, hw, progress, force_export, mirror))
    return dist.on_main(ranks, lambda: function(run, run_dir, hw, progress))


def run_gpl(run: RunConfig, *, until: str | None = None, progress: bool = True, device: str | None = None,
            on_stage: Callable[[dict], None] | None = None, restart: bool = False, force_export: bool = False,
            mirror: str | Path | None = None, overrides: dict | None = None) -> list[dict]:
    """Run the stages in order up to and including ``until`` (default: all), skipping finished ones.

    Under ``torchrun`` every process calls this; see :mod:`training.dist` for who does what.

    Args:
        run: validated configuration.
        until: last stage to run (earlier unfinished stages run first).
        progress: show progress bars.
        device: force ``"cpu"`` or ``"cuda"`` (default: CUDA when available).
        on_stage: called with each stage's done-marker as it finishes or is skipped.
        restart: redo stages whose work was made with other settings (otherwise they refuse).
        force_export: publish the model even when it did not beat the base model beyond noise.
        mirror: a folder that gets each finished stage and the best checkpoint, and from which a
            fresh machine restores what its run directory lacks (Google Drive on Colab).
        overrides: the command-line overrides in force, stored with the run for later invocations.

    Returns:
        The done-markers of the stages run or skipped, in order.

    Raises:
        StageError: a stage cannot run (``SettingsChangedError``: its work was made with other settings).
    """
    if until is not None and until not in STAGES:
        raise StageError(f"unknown stage {until!r}; choose one of {', '.join(STAGES)}")
    hw = resolve_hardware(run.train.precision, device)
    ranks = dist.start(hw.device)
    run_dir = RunDir(run.run_dir)
    copy = Mirror(mirror) if mirror else None
    hashes = {stage: run.stage_hash(stage) for stage in STAGES}
    hardware = hw.describe() + (f" x {ranks.world} processes" if ranks.distributed else "")

    def prepare() -> list[str]:
        run_dir.root.mkdir(parents=True, exist_ok=True)
        restored = copy.restore(run_dir, hashes) if copy else []
        write_json(run_dir.root / "config.json", run.to_dict())
        if overrides is not None:
            run_dir.save_overrides(overrides)
        if copy:
            copy.push_root_files(run_dir)
        return restored

    restored = dist.on_main(ranks, prepare)
    talk = progress and ranks.is_main
    if talk:
        print(f"GPL run {run.name} in {run_dir.root} on {hardware}", flush=True)
        for line in restored:
            print(f"restored from {copy.root}: {line}", flush=True)
    infos = []
    for stage in STAGES[: STAGES.index(until or STAGES[-1]) + 1]:
        config_hash, settings = hashes[stage], run.stage_settings(stage)
        done = run_dir.is_done(stage, config_hash)
        if done and stage == "export" and force_export and not run_dir.done_info(stage).get("published"):
            done = False  # exported but held back: publishing it now is what --force-export asks
        if done:
            info = {**run_dir.done_info(stage), "skipped": True}
        else:
            dist.on_main(ranks, lambda s=stage, h=config_hash, v=settings: run_dir.begin(s, h, v, restart=restart))
            with _quiet_libraries(progress):
                result = _run_stage(stage, run, run_dir, hw, progress, ranks, copy, force_export)

            def finish(s=stage, h=config_hash, v=settings, r=result) -> dict:
                marker = run_dir.finish(s, h, {**r, "hardware": hardware}, v)
                if copy:
                    copy.push_stage(run_dir, s)
                return marker

            info = dist.on_main(ranks, finish)
        infos.append(info)
        if talk:
            print(summary_line(info), flush=True)
        if on_stage is not None:
            on_stage(info)
    return infos


@contextlib.contextmanager
def _quiet_libraries(progress: bool):
    """Silence the per-load progress bars and advisories of transformers; keep our own bars."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if progress:
            hf_logging.enable_progress_bar()
