"""Passage vectors composed from real sentence encodings: the encoder behind ``benchmarks/scale_corpus.py``.

A :class:`ComposedEncoder` is the real :class:`recommender.encoder.Encoder` in every respect but one: its
``encode`` returns, for each passage, the mean of the pre-computed real vectors of the whole sentences it
contains (re-normalised when the model normalises), looked up in a :class:`SentenceTable` that is encoded
once and saved. Fragments that are not whole known sentences (a sentence cut at a chunk border) are left
out; a passage with no whole known sentence is encoded for real, and counted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender import config  # noqa: E402
from recommender.encoder import Encoder  # noqa: E402

log = logging.getLogger(__name__)

# A sentence: from a non-space up to the first run of terminal punctuation (and closing quotes/brackets)
# that is followed by whitespace or the end. Sentences are joined with one space, so splitting a joined
# text gives back exactly the sentences that were joined (a pooled sentence has no earlier such point).
# Written with possessive quantifiers: the same matches as r"\S.*?[.!?]+[\"'”’)\]]*(?=\s|$)" (DOTALL),
# checked on every shared review and synopsis, at a third of the cost.
_SENTENCE = re.compile(r"\S[^.!?]*+(?:[.!?]++[\"'”’)\]]*+(?!\s|$)[^.!?]*+)*+[.!?]++[\"'”’)\]]*+(?=\s|$)")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` that end in terminal punctuation (a trailing unpunctuated fragment is dropped)."""
    return _SENTENCE.findall(text)


class SentenceTable:
    """Real embeddings of distinct sentences, saved under the work directory keyed by the model's sha256."""

    def __init__(self, sentences: list[str], vectors: np.ndarray, encode_seconds: float = 0.0) -> None:
        self.sentences = sentences
        self.vectors = vectors
        self.row_of = {s: i for i, s in enumerate(sentences)}
        #: Wall seconds spent encoding the saved table, over every run that added to it.
        self.encode_seconds = encode_seconds

    @staticmethod
    def path_for(work_dir: Path, encoder: Encoder) -> Path:
        return Path(work_dir) / f"sentences-{encoder.sha256[:16]}.npz"

    @classmethod
    def load_or_encode(cls, path: Path, encoder: Encoder, sentences: Sequence[str], *,
                       batch_size: int = config.ENCODE_BATCH_SIZE,
                       progress: bool = True, save_every: int = 2048) -> tuple[SentenceTable, int, float]:
        """The table of ``sentences``: what ``path`` already holds is reused, the rest is encoded and saved.

        Returns:
            The table, how many sentences were encoded now, and the seconds that took.
        """
        known: dict[str, np.ndarray] = {}
        spent = 0.0
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as saved:
                    known = dict(zip(saved["sentences"].tolist(), saved["vectors"], strict=True))
                    spent = float(saved["encode_seconds"])
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable sentence table %s (%s); encoding again", path, exc)
                known, spent = {}, 0.0
        wanted = list(dict.fromkeys(sentences))
        missing = sorted((s for s in wanted if s not in known), key=len)  # similar lengths batch with less padding
        started = time.perf_counter()
        bar = tqdm(total=len(missing), desc="encoding sentences", unit="sentence", disable=not progress)
        total_seconds = spent
        for lo in range(0, len(missing), save_every):
            part = missing[lo:lo + save_every]
            known.update(zip(part, encoder.encode(part, batch_size=batch_size), strict=True))
            total_seconds = spent + time.perf_counter() - started
            cls._save(path, known, total_seconds)  # a killed run keeps what it encoded
            bar.update(len(part))
        bar.close()
        seconds = time.perf_counter() - started
        vectors = np.stack([known[s] for s in wanted]) if wanted else np.zeros((0, encoder.dim), np.float32)
        return cls(wanted, vectors.astype(np.float32), total_seconds), len(missing), seconds

    @staticmethod
    def _save(path: Path, known: dict[str, np.ndarray], encode_seconds: float) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, sentences=np.array(list(known), dtype=str), vectors=np.stack(list(known.values())),
                 encode_seconds=np.float64(encode_seconds))
        tmp.replace(path)


@dataclasses.dataclass
class CompositionCounts:
    """What :class:`ComposedEncoder` did so far."""

    composed_passages: int = 0
    real_passages: int = 0
    sentences_used: int = 0
    fragments_skipped: int = 0
    real_seconds: float = 0.0
    composed_offsets: int = 0
    real_offsets: int = 0
    offsets_checked: int = 0


class ComposedEncoder:
    """The real encoder, except that ``encode`` composes passage vectors from pre-computed sentence vectors.

    Everything else (name, sha256, dim, similarity, tokenizer, ``encode_query``, ``info``…) is the wrapped
    encoder's own, so an index built with this encoder is searched with the real one. ``token_offsets`` gives
    the real tokenizer's answer too, but for a text made of whole table sentences it is put together from each
    sentence's offsets (tokens never cross the space between two sentences): tokenizing 160k reviews would
    otherwise take most of the build. The first texts put together so are checked against the real tokenizer,
    and any difference switches that shortcut off (``compose_offsets=False`` never uses it).
    """

    #: Composed token offsets compared with the real tokenizer's before the shortcut is trusted.
    OFFSET_CHECKS = 64

    def __init__(self, encoder: Encoder, table: SentenceTable, *, compose_offsets: bool = True) -> None:
        self.encoder = encoder
        self.table = table
        self.counts = CompositionCounts()
        self.compose_offsets = compose_offsets
        self._sentence_offsets: dict[str, np.ndarray] | None = None

    def __getattr__(self, name: str):
        if name in ("encoder", "table", "counts", "compose_offsets", "_sentence_offsets"):
            raise AttributeError(name)  # not set yet (e.g. during unpickling): no recursion
        return getattr(self.encoder, name)

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character span of every token of each text, exactly as the real tokenizer gives them."""
        texts = list(texts)
        if not self.compose_offsets:
            self.counts.real_offsets += len(texts)
            return self.encoder.token_offsets(texts)
        if self._sentence_offsets is None:
            sentences = self.table.sentences
            self._sentence_offsets = {s: np.asarray(spans, dtype=np.int64).reshape(-1, 2) for s, spans
                                      in zip(sentences, self.encoder.token_offsets(sentences), strict=True)}
        result: list = [self._composed_offsets(text) for text in texts]
        missing = [i for i, spans in enumerate(result) if spans is None]
        unchecked = [i for i, spans in enumerate(result) if spans is not None][
            :max(0, self.OFFSET_CHECKS - self.counts.offsets_checked)]
        asked = missing + unchecked
        real = self.encoder.token_offsets([texts[i] for i in asked]) if asked else []
        checking = set(unchecked)
        for i, spans in zip(asked, real, strict=True):
            if i in checking and spans != result[i]:
                log.warning("composed token offsets differ from the tokenizer's; tokenizing every text from now on")
                self.compose_offsets = False
                return self.token_offsets(texts)
            result[i] = spans
        self.counts.offsets_checked += len(unchecked)
        self.counts.real_offsets += len(missing)
        self.counts.composed_offsets += len(texts) - len(missing)
        return result

    def _composed_offsets(self, text: str) -> list[tuple[int, int]] | None:
        """Token spans of a text that is whole table sentences joined by single spaces, else None."""
        parts, expected = [], 0
        for match in _SENTENCE.finditer(text):
            spans = self._sentence_offsets.get(match.group())
            if spans is None or match.start() != expected:
                return None
            parts.append(spans + match.start())
            expected = match.end() + 1
        if not parts or expected != len(text) + 1:
            return None
        spans = np.concatenate(parts)
        return list(zip(spans[:, 0].tolist(), spans[:, 1].tolist(), strict=True))

    def encode(self, texts: Sequence[str], batch_size: int = config.ENCODE_BATCH_SIZE,
               show_progress_bar: bool = False, on_batch: Callable[[int], object] | None = None) -> np.ndarray:
        """Each text's vector: the mean of its whole known sentences' vectors (unit length when the model
        normalises); a text without one is encoded by the real model. ``on_batch`` hears of every text
        at the end, as the real encoder reports its batches."""
        texts = list(texts)
        dim = self.encoder.dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        rows: list[int] = []
        starts: list[int] = []
        composed: list[int] = []
        unknown: list[int] = []
        row_of = self.table.row_of
        for i, text in enumerate(texts):
            pieces = split_sentences(text)
            found = [row_of[s] for s in pieces if s in row_of]
            self.counts.fragments_skipped += len(pieces) - len(found)
            if found:
                starts.append(len(rows))
                rows.extend(found)
                composed.append(i)
            else:
                unknown.append(i)
        if composed:
            sums = np.add.reduceat(self.table.vectors[rows], starts, axis=0, dtype=np.float64)
            sizes = np.diff(np.append(starts, len(rows)))
            means = sums / sizes[:, None]
            if self.encoder.normalize:
                means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
            out[composed] = means
        if unknown:
            started = time.perf_counter()
            out[unknown] = self.encoder.encode([texts[i] for i in unknown], batch_size=batch_size,
                                               show_progress_bar=show_progress_bar)
            self.counts.real_seconds += time.perf_counter() - started
        self.counts.composed_passages += len(composed)
        self.counts.real_passages += len(unknown)
        self.counts.sentences_used += len(rows)
        if on_batch is not None:
            on_batch(len(texts))
        return out


def encoding_threads() -> int:
    """Torch threads for encoding the sentence table: one when the machine is already busy.

    With the cores oversubscribed, a second OpenMP thread mostly spins waiting for the first: on the shared
    2-core machine (load ~7) one thread encoded 50 sentences/s and two 20/s (see also
    ``recommender.index.serving_threads``).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:
        busy = False
    return 1 if busy else cores


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the body with ``threads`` torch CPU threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
