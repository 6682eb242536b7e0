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

import hashlib
import heapq
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

_RESOURCES: dict[tuple, WorkerResources] = {}  # settings -> the resources of the metadata version last seen
_RESOURCES_LOCK = threading.Lock()


def _current_manifest(metadata: str, cache_dir: str | None) -> tuple[str, str]:
    """(local directory holding the metadata's current manifest, that manifest's sha256).

    For s3:// metadata the manifest is fetched (a HEAD when its ETag is unchanged) and copied
    into `<cache>/metadata/<bucket>/<key>/<digest>/`, where that version's automata are
    downloaded too: a directory replaced at the same URI gets a new cache directory, never the
    old version's automata under the new manifest.
    """
    from curation import metadata_dir

    if not metadata.startswith("s3://"):
        return metadata, metadata_dir.manifest_sha256(metadata)
    from curation import storage

    base = os.path.join(cache_dir or storage.default_cache_dir(), "metadata", *storage.split_s3(metadata))
    fetched = storage.download_to_local(storage.join(metadata, metadata_dir.MANIFEST),
                                        os.path.join(base, metadata_dir.MANIFEST))
    digest = metadata_dir.file_sha256(fetched)
    root = os.path.join(base, digest[:32])
    if not os.path.isfile(os.path.join(root, metadata_dir.MANIFEST)):
        storage.download_to_local(fetched, os.path.join(root, metadata_dir.MANIFEST))
    return root, digest


class WorkerResources:
    """The LID model and the metadata automata of one Python worker, loaded once and shared.

    `metadata` is a local directory or an s3:// prefix; for S3 the manifest and each automaton
    are downloaded on first use into a local cache keyed by the manifest's sha256
    (`_current_manifest`). Every automaton is checked against the manifest's digest before it
    is loaded (curation.metadata_dir); a cached download that fails the check is fetched again
    once, so a replaced object or a damaged cache file is not kept.
    """

    def __init__(self, metadata: str, lid_model: str | None, max_loaded: int, cache_dir: str | None = None,
                 max_loaded_mb: float = 0, lid_script_check: bool = True):
        from curation.lid import LanguageIdentifier
        from curation.metadata_dir import MetadataDir

        self.metadata_uri = metadata
        self.lid = LanguageIdentifier(lid_model, script_check=lid_script_check)
        self._remote = metadata.startswith("s3://")
        self.local_root, digest = _current_manifest(metadata, cache_dir)
        self.metadata = MetadataDir(self.local_root, max_loaded=max_loaded, max_loaded_mb=max_loaded_mb)
        if self._remote and self.metadata.manifest_sha256 != digest:
            raise ValueError(f"{self.local_root}: cached manifest does not match its digest {digest}; remove the cache")
        self.manifest_sha256 = self.metadata.manifest_sha256  # the metadata version these resources hold
        self.languages = frozenset(self.metadata.languages())

    def automaton(self, lang: str):
        if not self._remote:
            return self.metadata.automaton(lang)
        import contextlib

        from curation import storage
        from curation.metadata_dir import MetadataChecksumError

        rel = f"automata/{lang}.ac"
        local = os.path.join(self.local_root, rel)
        if not os.path.exists(local):
            storage.download_to_local(storage.join(self.metadata_uri, rel), local)
        try:
            return self.metadata.automaton(lang)
        except MetadataChecksumError:
            with contextlib.suppress(FileNotFoundError):  # another thread may have removed it first
                os.unlink(local)  # damaged, or downloaded from a newer version: fetch once more
            storage.download_to_local(storage.join(self.metadata_uri, rel), local)
            return self.metadata.automaton(lang)


def worker_resources(metadata: str, lid_model: str | None, max_loaded: int = 16, cache_dir: str | None = None,
                     max_loaded_mb: float = 0, expected_manifest_sha256: str | None = None,
                     lid_script_check: bool = True):
    """The process-wide WorkerResources for these settings and the metadata's current version.

    Called once per task: it reads the manifest's digest (a HEAD request for S3) and builds new
    resources when the metadata at `metadata` was replaced since the last call, so a reused
    Python worker never matches with the automata of a version the run did not read. With
    `expected_manifest_sha256` (the digest of the manifest the driver read), metadata replaced
    during the run is an error rather than a run that mixes two versions.
    """
    key = (metadata, lid_model, max_loaded, cache_dir, max_loaded_mb, lid_script_check)
    _root, digest = _current_manifest(metadata, cache_dir)
    if expected_manifest_sha256 is not None and digest != expected_manifest_sha256:
        raise ValueError(f"{metadata}: the metadata changed during the run (manifest sha256 {digest}, "
                         f"the run read {expected_manifest_sha256})")
    res = _RESOURCES.get(key)
    if res is None or res.manifest_sha256 != digest:
        with _RESOURCES_LOCK:
            res = _RESOURCES.get(key)
            if res is None or res.manifest_sha256 != digest:
                res = WorkerResources(metadata, lid_model, max_loaded, cache_dir, max_loaded_mb, lid_script_check)
                _RESOURCES[key] = res  # the old version's resources go with their last user
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
                 min_lid_prob: float = 0.0, count_only: Iterable[str] = (), max_queued: int | None = None,
                 sample_every: int = 0, sample_max: int = 0, decontam=None):
        from curation.inputs import EventCounter

        self.input_id = input_id
        self.source = source
        self.res = resources
        self.batch_size = batch_size
        self.max_queued = max_queued or 16 * batch_size
        self.min_lid_prob = min_lid_prob
        # bulk reasons (most of the web: unmatched texts, request records...): their reject rows
        # are a deterministic sample by content, 1 in `sample_every` by a hash of the detail, at
        # most the `sample_max` smallest hashes per reason (a bottom-k: the same rows whatever the
        # order or batching of the input); every other reason keeps a row per reject
        self.count_only = frozenset(count_only)
        self.sample_every, self.sample_max = sample_every, sample_max
        self.bulk: dict[str, list[tuple[int, str, str]]] = {}  # reason -> max-heap of (-hash, stage, detail)
        self.acct = StageAccounting()
        self.counter = EventCounter()
        self.lid_langs: Counter = Counter()
        self.lid_corrections: Counter = Counter()  # 'ja>zh': texts the LID script check relabelled
        self.matched_langs: Counter = Counter()
        self.queues: dict[str, list[tuple[pa.Table, list[str]]]] = {}  # (a slice of a batch, its texts)
        self.queued_by_lang: Counter = Counter()
        self.queued = 0
        self.rejects: list[tuple[str, str, str]] = []
        self.fill: dict[str, str] = {}  # constant columns a column input does not carry
        self._langs = None
        # decontamination (curation.decontam.DecontamIndex or None): matched texts of an eval
        # image's URL or near-duplicates of an eval caption become rejects of stage "decontam"
        self.decontam = decontam
        self.decontam_langs: Counter = Counter()
        self.decontam_examples: list[dict] = []

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
        result = self.res.lid.identify(texts)
        idx, probs = result.idx, result.probs
        rank_of_label, names, unknown, label_strings = self._lang_tables()
        if result.model_idx is not idx:  # the script check relabelled some texts: counted, for audit
            from curation.lid import count_corrections

            self.lid_corrections.update(count_corrections(result, self.res.lid.label_table()[0]))
        group = rank_of_label[idx]  # per text: index into names (sorted)
        per_name = np.bincount(group, minlength=len(names))
        for r in np.flatnonzero(per_name).tolist():
            self.lid_langs[names[r]] += int(per_name[r])
        dropped = unknown[group]
        rejected: Counter = Counter()
        rejected["no_metadata_lang"] = int(dropped.sum())
        if rejected["no_metadata_lang"]:
            self._text_rejects("lid", "no_metadata_lang", np.flatnonzero(dropped), texts, idx, label_strings)
        if self.min_lid_prob > 0:
            low = ~dropped & ~(probs >= self.min_lid_prob)
            rejected["low_lid_prob"] = int(low.sum())
            if rejected["low_lid_prob"]:
                self._text_rejects("lid", "low_lid_prob", np.flatnonzero(low), texts, idx, label_strings)
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
        # one take per batch puts each language's rows together; its queue entries are zero-copy
        # slices of that table (a take per language and batch cost more than the take itself)
        table = pa.Table.from_pydict(arrays).take(pa.array(order, pa.int64()))
        ordered_texts = list(map(texts.__getitem__, order.tolist()))
        start = 0
        for r in np.flatnonzero(per_lang).tolist():
            lang, m = names[r], int(per_lang[r])
            # texts as str for matching; the rows are filtered once per matched queue
            self.queues.setdefault(lang, []).append((table.slice(start, m), ordered_texts[start:start + m]))
            start += m
            self.queued_by_lang[lang] += m
            self.queued += m
            if self.queued_by_lang[lang] >= self.batch_size:
                yield from self._match(lang)
        while self.queued > self.max_queued:
            yield from self._match(max(sorted(self.queues), key=lambda k: self.queued_by_lang[k]))

    def _text_rejects(self, stage: str, reason: str, rows: np.ndarray, texts: Sequence[str], idx=None,
                      labels=None) -> None:
        """Reject rows (or their sample) for texts[rows]; the detail names the LID label when known."""
        from curation.inputs import excerpt

        rows = rows.tolist()

        def detail(j: int) -> str:
            i = rows[j]
            return (f"{labels[int(idx[i])].as_py()}: " if idx is not None else "") + excerpt(texts[i])

        if reason in self.count_only:
            self._bulk_rows(stage, reason, [texts[i] for i in rows], detail)
        else:
            self.rejects.extend((stage, reason, detail(j)) for j in range(len(rows)))

    def _match(self, lang: str) -> Iterator[pa.RecordBatch]:
        from curation.matcher import match_batch_flat

        pieces = self.queues.pop(lang, [])
        m = self.queued_by_lang.pop(lang, 0)
        self.queued -= m
        if not m:
            return
        texts = pieces[0][1] if len(pieces) == 1 else [t for p in pieces for t in p[1]]
        ids, bounds = match_batch_flat(self.res.automaton(lang), texts)
        sizes = np.diff(bounds)
        matched = sizes > 0
        n = int(matched.sum())
        self.acct.add("match", m, n, {"no_match": m - n})
        if m > n:
            self._text_rejects("match", "no_match", np.flatnonzero(~matched), texts)
        if not n:
            return
        self.matched_langs[lang] += n
        queued = pieces[0][0] if len(pieces) == 1 else pa.concat_tables([p[0] for p in pieces])  # no copy
        kept = (queued if n == m else queued.filter(pa.array(matched))).combine_chunks()
        cols = {name: kept.column(name).combine_chunks() for name in kept.column_names}
        if "uuid" not in cols:  # hashed only for texts that matched (a column input's URLs)
            from curation.urls import image_uuids

            cols["uuid"] = pa.array(image_uuids(cols["url"].to_pylist()), pa.string())
        for name, value in self.fill.items():
            if name not in cols:
                cols[name] = pa.repeat(pa.scalar(value, pa.string()), n)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(sizes[matched], out=offsets[1:])
        batch = _column_batch(ANNOTATED, n, {
            **cols,
            "input_id": pa.repeat(pa.scalar(self.input_id, pa.string()), n),
            "kind": pa.repeat(pa.scalar("text", pa.string()), n),
            "lang": pa.repeat(pa.scalar(lang, pa.string()), n),
            # ids of the texts without a match are empty, so the flat ids are exactly the kept lists
            "entry_ids": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int32())),
        })
        if self.decontam is not None:
            batch = self._decontaminate(lang, batch)
        if batch.num_rows:
            yield batch

    MAX_DECONTAM_EXAMPLES = 20  # per input, in its stats (the report shows the run's first ones)

    def _decontaminate(self, lang: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The matched texts of `batch` that no evaluation set holds; the others become rejects
        (stage decontam, reason eval_url or eval_text, a row each) before anything counts them."""
        from curation.inputs import excerpt

        n = batch.num_rows
        urls, texts = batch.column("url"), batch.column("text")
        reasons = np.asarray(self.decontam.check(urls, texts, normalized_urls=True), dtype=object)
        hit = np.flatnonzero(reasons != None)  # noqa: E711 (elementwise)
        rejected = Counter(reasons[hit].tolist())
        self.acct.add("decontam", n, n - len(hit), rejected)
        if not len(hit):
            return batch
        self.matched_langs[lang] -= len(hit)
        self.decontam_langs[lang] += len(hit)
        for i in hit.tolist():
            url, text = urls[i].as_py(), texts[i].as_py()
            self.rejects.append(("decontam", reasons[i], excerpt(f"{url} {text}")))
            self.decontam_examples.append({"reason": reasons[i], "lang": lang, "url": url, "text": excerpt(text)})
        self.decontam_examples = sorted(self.decontam_examples,
                                        key=lambda e: (e["reason"], e["text"], e["url"]))[:self.MAX_DECONTAM_EXAMPLES]
        keep = np.ones(n, dtype=bool)
        keep[hit] = False
        return batch.filter(pa.array(keep))

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

    def _bulk_rows(self, stage: str, reason: str, keys: Sequence[str], detail=lambda j: "") -> None:
        """Offer rejects of a bulk reason to its sample (kept until the input ends): reject j is
        chosen by a hash of keys[j] (its content); detail(j) is built for the chosen only."""
        if self.sample_every <= 0 or self.sample_max <= 0:
            return
        heap = self.bulk.setdefault(reason, [])
        for j, key in enumerate(keys):
            h = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            if h % self.sample_every or (len(heap) >= self.sample_max and -heap[0][0] <= h):
                continue
            item = (-h, stage, detail(j))
            if len(heap) < self.sample_max:
                heapq.heappush(heap, item)
            else:
                heapq.heapreplace(heap, item)

    def _reject_rows(self, stage: str, reason: str, details: Sequence[str]) -> None:
        """Reject rows for `details` (one per reject): all of them, or the sample of a bulk reason."""
        if reason in self.count_only:
            self._bulk_rows(stage, reason, details, details.__getitem__)
        else:
            self.rejects.extend((stage, reason, d) for d in details)

    def _reject(self, reason: str, detail: str) -> Iterator[pa.RecordBatch]:
        from curation.inputs import RECORD_REJECT_REASONS

        self._reject_rows("read" if reason in RECORD_REJECT_REASONS else "extract", reason, [detail])
        if len(self.rejects) >= self.batch_size:
            yield self._rejects_batch(self.rejects)
            self.rejects = []

    def stats(self) -> dict:
        return {
            "input": self.source,
            "accounting": self.acct.to_dict(),
            "lid_langs": dict(sorted(self.lid_langs.items())),
            "lid_corrections": dict(sorted(self.lid_corrections.items())),
            "matched_langs": dict(sorted(self.matched_langs.items())),
            **({"decontam": {"by_lang": dict(sorted(self.decontam_langs.items())),
                             "examples": self.decontam_examples}} if self.decontam is not None else {}),
        }

    def _finish(self) -> Iterator[pa.RecordBatch]:
        for lang in sorted(self.queues):
            yield from self._match(lang)
        for reason in sorted(self.bulk):  # the bulk reasons' samples, by hash
            self.rejects.extend((stage, reason, detail) for _h, stage, detail in sorted(self.bulk[reason], reverse=True))
        self.bulk = {}
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


