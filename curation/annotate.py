"""Annotation of one input, the curate job's first phase: LID -> per-language queues -> matching.

The `Annotator` (driven per input file by curation.grouping.process_input) takes the events
or column chunks of curation.inputs, identifies languages in batches (one fastText call per
`batch_size` texts), queues the kept texts per language as Arrow slices and matches a
language's queue against its Aho-Corasick automaton when it is full, so each automaton pass
covers many texts. It yields ANNOTATED record batches: matched texts, reject rows and one
stats row. Grouping per image, counting and balancing follow in curation.grouping, sampling
in curation.sampling.

Everything an executor loads (LID model, metadata automata) is cached per Python worker
process (`worker_resources`), automata LRU-bounded, so a task pays for loading once. Every
record is accounted for in a curation.accounting.StageAccounting (records in = out +
rejected by reason).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from curation.accounting import StageAccounting, accounting_from_events
from curation.inputs import PAIR_COLUMNS, PairChunk
from curation.schemas import MATCHED_TEXT, REJECTS

# --- per-worker resources ------------------------------------------------------------------------

_RESOURCES: dict[tuple, WorkerResources] = {}
_RESOURCES_LOCK = threading.Lock()


class WorkerResources:
    """The LID model and the metadata automata of one Python worker, loaded once and shared.

    `metadata` is a local directory or an s3:// prefix; for S3 the manifest and each automaton
    are downloaded on first use into a local cache (curation.storage), keyed by bucket/key.
    """

    def __init__(self, metadata: str, lid_model: str | None, max_loaded: int, cache_dir: str | None = None,
                 max_loaded_mb: float = 0):
        from curation.lid import LanguageIdentifier
        from curation.metadata_dir import MANIFEST, MetadataDir

        self.metadata_uri = metadata
        self.lid = LanguageIdentifier(lid_model)
        self._remote = metadata.startswith("s3://")
        if self._remote:
            from curation import storage

            root = os.path.join(cache_dir or storage.default_cache_dir(), "metadata", *storage.split_s3(metadata))
            storage.download_to_local(storage.join(metadata, MANIFEST), os.path.join(root, MANIFEST))
            self.local_root = root
        else:
            self.local_root = metadata
        self.metadata = MetadataDir(self.local_root, max_loaded=max_loaded, max_loaded_mb=max_loaded_mb)
        self.languages = frozenset(self.metadata.languages())

    def automaton(self, lang: str):
        if self._remote:
            local = os.path.join(self.local_root, "automata", f"{lang}.ac")
            if not os.path.exists(local):
                from curation import storage

                storage.download_to_local(storage.join(self.metadata_uri, "automata", f"{lang}.ac"), local)
        return self.metadata.automaton(lang)


def worker_resources(metadata: str, lid_model: str | None, max_loaded: int = 16, cache_dir: str | None = None,
                     max_loaded_mb: float = 0):
    """The process-wide WorkerResources for these settings (created on first call)."""
    key = (metadata, lid_model, max_loaded, cache_dir, max_loaded_mb)
    res = _RESOURCES.get(key)
    if res is None:
        with _RESOURCES_LOCK:
            res = _RESOURCES.get(key)
            if res is None:
                res = WorkerResources(metadata, lid_model, max_loaded, cache_dir, max_loaded_mb)
                _RESOURCES[key] = res
    return res


# --- stage 1: one input file -> matched texts, rejects, stats -----------------------------------

# What Annotator yields: one schema for the three kinds of rows (texts, rejects, the stats row);
# curation.grouping splits them into the per-input state files.
# A text row carries MATCHED_TEXT's fields flat; a reject row REJECTS' (its source is the input).
ANNOTATED = pa.schema(
    [("input_id", pa.string()), ("kind", pa.string()), ("uuid", pa.string()), ("url", pa.string())]  # kind: text | reject | stats
    + list(MATCHED_TEXT)
    + [REJECTS.field(name) for name in ("stage", "reason", "detail")]
)


def _column_batch(schema: pa.Schema, n: int, cols: Mapping[str, object]) -> pa.RecordBatch:
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema]
    arrays = [a if isinstance(a, pa.Array) else pa.array(a, f.type) for a, f in zip(arrays, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def identify(texts: Sequence[str], resources: WorkerResources, min_lid_prob: float = 0.0):
    """LID of a batch (one fastText call): labels, probs, langs and the reject reason per text (None = kept)."""
    labels, probs, langs = resources.lid.predict_arrays(list(texts))
    known = resources.languages
    reasons: list[str | None] = []
    for lang, prob in zip(langs.tolist(), probs.tolist(), strict=True):
        if lang not in known:
            reasons.append("no_metadata_lang")
        elif prob < min_lid_prob:
            reasons.append("low_lid_prob")
        else:
            reasons.append(None)
    return labels, probs, langs, reasons


class Annotator:
    """Turns the events (or column chunks) of one input into ANNOTATED record batches: texts,
    rejects and a final stats row.

    Pairs are held column-wise and identified in batches of `batch_size` (one fastText call),
    then queued per language as Arrow slices and matched when a language's queue holds
    `batch_size` texts (or the queues together hold `max_queued`, then the longest one goes):
    an automaton is loaded for a full batch of its language, never once per small group, so an
    LRU of a few automata suffices however many languages an input mixes.
    """

    def __init__(self, input_id: str, source: str, resources: WorkerResources, batch_size: int = 4096,
                 min_lid_prob: float = 0.0, count_only: Iterable[str] = (), max_queued: int | None = None):
        from curation.inputs import EventCounter

        self.input_id = input_id
        self.source = source
        self.res = resources
        self.batch_size = batch_size
        self.max_queued = max_queued or 16 * batch_size
        self.min_lid_prob = min_lid_prob
        self.count_only = frozenset(count_only)
        self.acct = StageAccounting()
        self.counter = EventCounter()
        self.lid_langs: Counter = Counter()
        self.matched_langs: Counter = Counter()
        self.queues: dict[str, list[tuple[pa.Table, np.ndarray, list[str]]]] = {}  # (batch, its rows, texts)
        self.queued_by_lang: Counter = Counter()
        self.queued = 0
        self.rejects: list[tuple[str, str, str]] = []
        self.fill: dict[str, str] = {}  # constant columns a column input does not carry
        self._langs = None

    # --- LID, queues, matching ---

    def _lang_tables(self):
        """Per LID label index: the rank of its metadata language among the model's (sorted)
        languages; those names; and per rank whether the metadata has it."""
        if self._langs is None:
            short, langs = self.res.lid.label_table()
            names = sorted(set(langs.tolist()))
            rank = {lang: i for i, lang in enumerate(names)}
            self._langs = (np.array([rank[lang] for lang in langs.tolist()], dtype=np.int64), names,
                           np.array([lang not in self.res.languages for lang in names], dtype=bool),
                           pa.array(short.tolist(), pa.string()))
        return self._langs

    def _identify(self, cols: Mapping[str, object], texts: list[str]) -> Iterator[pa.RecordBatch]:
        """LID of one batch; the kept texts are queued per language (cols: PAIR_COLUMNS as Arrow
        arrays or lists, any subset that includes "url"; texts: the text column as str)."""
        n = len(texts)
        if not n:
            return
        # what `identify` decides, per language group rather than per text (in numpy)
        idx, probs = self.res.lid.predict_indices(texts)
        rank_of_label, names, unknown, label_strings = self._lang_tables()
        group = rank_of_label[idx]  # per text: index into names (sorted)
        per_name = np.bincount(group, minlength=len(names))
        for r in np.flatnonzero(per_name).tolist():
            self.lid_langs[names[r]] += int(per_name[r])
        dropped = unknown[group]
        rejected: Counter = Counter()
        rejected["no_metadata_lang"] = int(dropped.sum())
        if self.min_lid_prob > 0:
            low = ~dropped & ~(probs >= self.min_lid_prob)
            rejected["low_lid_prob"] = int(low.sum())
            dropped |= low
        self.acct.add("lid", n, n - sum(rejected.values()), rejected)
        kept = np.flatnonzero(~dropped)
        if not kept.size:
            return
        order = kept[np.argsort(group[kept], kind="stable")]  # by language, input order within
        per_lang = np.bincount(group[order], minlength=len(names))
        arrays = {name: (v if isinstance(v, pa.Array) else pa.array(v, pa.string())) for name, v in cols.items()}
        arrays["lid"] = label_strings.take(pa.array(idx))
        arrays["lid_prob"] = pa.array(probs, pa.float32())
        table = pa.Table.from_pydict(arrays)
        ordered_texts = list(map(texts.__getitem__, order.tolist()))
        start = 0
        for r in np.flatnonzero(per_lang).tolist():
            lang, m = names[r], int(per_lang[r])
            # rows stay in the batch's table (taken once, after matching); texts as str for matching
            self.queues.setdefault(lang, []).append((table, order[start:start + m], ordered_texts[start:start + m]))
            start += m
            self.queued_by_lang[lang] += m
            self.queued += m
            if self.queued_by_lang[lang] >= self.batch_size:
                yield from self._match(lang)
        while self.queued > self.max_queued:
            yield from self._match(max(sorted(self.queues), key=lambda k: self.queued_by_lang[k]))

    def _match(self, lang: str) -> Iterator[pa.RecordBatch]:
        from curation.matcher import match_batch_flat

        pieces = self.queues.pop(lang, [])
        m = self.queued_by_lang.pop(lang, 0)
        self.queued -= m
        if not m:
            return
        texts = pieces[0][2] if len(pieces) == 1 else [t for p in pieces for t in p[2]]
        ids, bounds = match_batch_flat(self.res.automaton(lang), texts)
        sizes = np.diff(bounds)
        matched = sizes > 0
        n = int(matched.sum())
        self.acct.add("match", m, n, {"no_match": m - n})
        if not n:
            return
        self.matched_langs[lang] += n
        parts, at = [], 0
        for table, rows, _texts in pieces:
            sel = rows[matched[at:at + len(rows)]]
            at += len(rows)
            if sel.size:
                parts.append(table.take(pa.array(sel, pa.int64())))
        kept = (parts[0] if len(parts) == 1 else pa.concat_tables(parts)).combine_chunks()
        cols = {name: kept.column(name).combine_chunks() for name in kept.column_names}
        if "uuid" not in cols:  # hashed only for texts that matched (a column input's URLs)
            from curation.urls import image_uuids

            cols["uuid"] = pa.array(image_uuids(cols["url"].to_pylist()), pa.string())
        for name, value in self.fill.items():
            if name not in cols:
                cols[name] = pa.repeat(pa.scalar(value, pa.string()), n)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(sizes[matched], out=offsets[1:])
        yield _column_batch(ANNOTATED, n, {
            **cols,
            "input_id": pa.repeat(pa.scalar(self.input_id, pa.string()), n),
            "kind": pa.repeat(pa.scalar("text", pa.string()), n),
            "lang": pa.repeat(pa.scalar(lang, pa.string()), n),
            # ids of the texts without a match are empty, so the flat ids are exactly the kept lists
            "entry_ids": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int32())),
        })

    def _rejects_batch(self, rejects: list[tuple[str, str, str]]) -> pa.RecordBatch:
        n = len(rejects)
        return _column_batch(ANNOTATED, n, {
            "input_id": [self.input_id] * n,
            "kind": ["reject"] * n,
            "source": [self.source] * n,
            "stage": [r[0] for r in rejects],
            "reason": [r[1] for r in rejects],
            "detail": [r[2] for r in rejects],
        })

    def _reject(self, reason: str, detail: str) -> Iterator[pa.RecordBatch]:
        from curation.inputs import RECORD_REJECT_REASONS

        if reason not in self.count_only:
            stage = "read" if reason in RECORD_REJECT_REASONS else "extract"
            self.rejects.append((stage, reason, detail))
            if len(self.rejects) >= self.batch_size:
                yield self._rejects_batch(self.rejects)
                self.rejects = []

    def stats(self) -> dict:
        return {
            "input": self.source,
            "accounting": self.acct.to_dict(),
            "lid_langs": dict(sorted(self.lid_langs.items())),
            "matched_langs": dict(sorted(self.matched_langs.items())),
        }

    def _finish(self) -> Iterator[pa.RecordBatch]:
        for lang in sorted(self.queues):
            yield from self._match(lang)
        if self.rejects:
            yield self._rejects_batch(self.rejects)
            self.rejects = []
        self.acct = accounting_from_events(self.counter).merge(self.acct)
        yield _column_batch(ANNOTATED, 1, {
            "input_id": [self.input_id], "kind": ["stats"], "source": [self.source],
            "detail": [json.dumps(self.stats(), sort_keys=True)],
        })

    # --- drivers ---

    def run(self, events: Iterable[tuple[str, object]]) -> Iterator[pa.RecordBatch]:
        """Events of curation.inputs (WAT files, JSONL and CSV tables, s3:// Parquet)."""
        counter = self.counter
        cols: dict[str, list] = {name: [] for name in PAIR_COLUMNS}
        appends = [(name, cols[name].append) for name in PAIR_COLUMNS]
        texts = cols["text"]
        for event in events:
            counter.add(event)
            kind, value = event
            if kind == "pair":
                for name, append in appends:
                    append(value[name])
                if len(texts) >= self.batch_size:
                    yield from self._identify(cols, texts)
                    for name in PAIR_COLUMNS:
                        cols[name].clear()
            elif kind == "reject":
                yield from self._reject(*value)
        yield from self._identify(cols, texts)
        yield from self._finish()

    def run_columns(self, chunks: Iterable[PairChunk]) -> Iterator[pa.RecordBatch]:
        """Column chunks (a columnar reader's pair_chunks): pairs as Arrow columns plus their texts as str."""
        counter = self.counter
        for chunk in chunks:
            counter.records += chunk.records
            counter.pairs += len(chunk.texts)
            for reason, detail in chunk.rejects:
                counter.add(("reject", (reason, detail)))
                yield from self._reject(reason, detail)
            self.fill.update(chunk.constants)
            bs = self.batch_size
            for start in range(0, len(chunk.texts), bs):
                yield from self._identify({k: v[start:start + bs] for k, v in chunk.columns.items()},
                                          chunk.texts[start:start + bs])
        yield from self._finish()


