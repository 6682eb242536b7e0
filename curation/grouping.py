"""Per-image grouping and counting: the curate job's task bodies around the uuid exchange.

Why: Spark's JVM side costs more per row than the whole LID + matching loop when every text
crosses into the JVM, is converted to rows, written, read back, shuffled as a wide row and
sorted. Here Spark only schedules tasks (RDD partitions of task ids, no SQL planning) and
carries small results (a stats document per input, per-language entry counts per bucket); the
texts stay in Arrow inside the Python workers:

  1. `process_input`: one input -> `<state>/input_id=<id>/texts.arrow` (matched texts
     sorted by uuid, an Arrow IPC file of small record batches), `rejects.parquet`,
     `distinct.bin` (HyperLogLog sketches of its distinct image URLs, hosts, page URLs and
     texts per language: `distinct_counts`), then `stats.json` (its completion marker).
  2. `group_bucket`: bucket k = a uuid range (uuids are uniform hex) -> reads that range of
     every input's texts (memory-mapped; batches outside the range are skipped), keeps identical texts of an
     image once, writes `matched/part-k.parquet` and returns per-language entry counts; task k
     also writes `rejects/part-k.parquet` for its share of the inputs.
  3. `curate_part`: matched/part-k -> `curated/part-k.parquet` (sampling.curate_batches) and
     the curated counts.
(jobs/curate.py runs them as Spark tasks.)

Files are written under a temporary name and renamed, so a retried or speculative task
leaves exactly one complete file. The number of buckets and the uuid ranges depend only on
the data, so any partitioning of the inputs gives byte-identical outputs. Task results are
summed with `merge_results` (associative, so Spark can tree-reduce them); `balance_counts`
turns the summed entry counts into t_lang and entry probabilities (curation.balance).
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation import annotate, balance, inputs, near_dup, runs, sampling, sketches, storage
from curation.schemas import COUNTS, CURATED, MATCHED, MATCHED_TEXT, REJECTS

TEXTS_FILE = "texts.arrow"
REJECTS_FILE = "rejects.parquet"
STATS_FILE = "stats.json"
BANDS_FILE = "bands.arrow"  # near-duplicate search: (band_key, text_hash) of the input's distinct texts
SKETCHES_FILE = "distinct.bin"  # the input's HyperLogLog sketches (sketches.DistinctCounts.to_bytes)
STATE_BATCH_ROWS = 8192  # rows per record batch of an input's texts: the unit a bucket read can skip
UUID_RANGES_KEY = b"uuid_ranges"  # schema metadata: [first, last] uuid of each record batch

# text_hash: near_dup.text_hashes of the text (the hash distinct_counts counts texts by), stored so
# the bucket tasks look texts up in the near-duplicate clusters without hashing them again
STATE_TEXTS = pa.schema([annotate.ANNOTATED.field(n) for n in
                         ("uuid", "url", "text", "source", "page_url", "lid", "lid_prob", "lang", "entry_ids")]
                        + [pa.field("text_hash", pa.int64())])
# Identical texts of an image are kept once: the first of this order (the smallest detail wins).
TEXT_ORDER = [("uuid", "ascending"), ("text", "ascending"), ("source", "ascending"),
              ("page_url", "ascending"), ("url", "ascending")]
REJECT_ORDER = [(n, "ascending") for n in REJECTS.names]
# dictionary-encoding the unique columns (uuid, url, text) costs CPU for no gain
LOW_CARDINALITY = ["source", "page_url", "lid", "lang"]

# matched/ and curated/: dictionary pages only where values repeat (uuid/url/text barely do)
MATCHED_DICTIONARY = [f"texts.list.element.{name}" for name in LOW_CARDINALITY]
CURATED_DICTIONARY = ["lang"]

UUID_PREFIX = 6  # hex digits of the uuid that place it in a bucket
_SPAN = 16 ** UUID_PREFIX


def input_state_dir(state_dir: str, input_id: str) -> str:
    return storage.join(state_dir, f"input_id={input_id}")


# --- 1. per input ------------------------------------------------------------------------------


def process_input(path: str, input_id: str, fmt: str, state_dir: str, res, *, state_key: str | None = None,
                  url_col: str = "URL", text_col: str = "TEXT", batch_size: int = 4096, min_lid_prob: float = 0.0,
                  count_only: Sequence[str] = (), state_compression: str | None = None, sample_every: int = 0,
                  sample_max: int = 0, decontam=None, near_dup_threshold: float | None = None) -> dict:
    """Parse -> LID -> match one input (annotate.Annotator) and store its state under
    `state_dir`/input_id=<state_key or input_id>; returns its stats. `decontam`: a
    curation.decontam.DecontamIndex whose hits become rejects (None: off); `near_dup_threshold`:
    also store the LSH band keys of the input's distinct texts (BANDS_FILE; None: off)."""
    cpu0 = time.process_time()
    out = input_state_dir(state_dir, state_key or input_id)
    storage.delete_prefix(storage.join(out, STATS_FILE))  # rewritten state is complete only once stats.json is back
    stage = annotate.Annotator(input_id, path, res, batch_size, min_lid_prob, count_only,
                               sample_every=sample_every, sample_max=sample_max, decontam=decontam)
    by_kind: dict[str, list[pa.RecordBatch]] = {"text": [], "reject": [], "stats": []}
    for batch in inputs.run_input(stage, path, fmt, url_col, text_col):
        if batch.num_rows:  # Annotator yields batches of one kind each
            by_kind[batch.column("kind")[0].as_py()].append(batch)
    texts = pa.Table.from_batches(by_kind["text"], schema=annotate.ANNOTATED).select(STATE_TEXTS.names[:-1])
    # sorted by uuid: a bucket reads only the row groups of its uuid range
    texts = texts.take(pa.array(uuid_order(texts.column("uuid").combine_chunks()), pa.int64()))
    rejects = pa.Table.from_batches(by_kind["reject"], schema=annotate.ANNOTATED).select(REJECTS.names)
    rejects = rejects.sort_by(REJECT_ORDER)
    distinct, text_hashes = distinct_counts(texts)
    texts = texts.append_column(STATE_TEXTS.field("text_hash"), pa.array(text_hashes.view(np.int64), pa.int64()))
    storage.makedirs(out)
    write_state_texts(texts, storage.join(out, TEXTS_FILE),
                      compression=None if state_compression in (None, "none") else state_compression)
    storage.write_table(rejects.cast(REJECTS), storage.join(out, REJECTS_FILE))
    storage.write_bytes(storage.join(out, SKETCHES_FILE), distinct.to_bytes())
    extra = {}
    if near_dup_threshold is not None:
        keys, members = text_band_pairs(texts, text_hashes, near_dup_threshold)
        write_arrow(pa.table({"band_key": keys, "text_hash": members}, schema=BANDS), storage.join(out, BANDS_FILE))
        extra["band_pairs"] = len(keys)
    stats = {**stage.stats(), **extra, "texts": texts.num_rows, "reject_rows": rejects.num_rows,
             "cpu_seconds": round(time.process_time() - cpu0, 3)}
    runs.write_json(storage.join(out, STATS_FILE), stats)  # last: the state of this input is complete
    return stats


def distinct_counts(texts: pa.Table, p: int = sketches.DEFAULT_P) -> tuple[sketches.DistinctCounts, np.ndarray]:
    """HyperLogLog sketches of an input's matched texts (STATE_TEXTS rows): distinct image URLs,
    hosts, page URLs and texts, per language and overall; and each row's text hash (uint64).

    Hashing reuses what the rows carry: an image URL's sketch key is balance.uuid_keys of its
    uuid (already a hash of the normalised URL), hosts and page URLs repeat and are hashed once
    per distinct value of the batch (dictionary encoding), texts once per row, in numpy. The
    text hashes are near_dup.text_hashes' (the same stable hash), returned for reuse.
    """
    distinct = sketches.DistinctCounts(p)
    if texts.num_rows == 0:
        return distinct, np.zeros(0, dtype=np.uint64)
    langs = pc.dictionary_encode(_col(texts, "lang"))  # grouped once for the four keys
    uuids = _col(texts, "uuid")
    distinct.update_hashes("image_url", balance.uuid_keys(uuids.to_pylist()), langs)
    urls = _col(texts, "url")
    distinct.update("host", sketches.url_hosts(urls), langs)
    distinct.update("page_url", _col(texts, "page_url"), langs)
    text_hashes = sketches.stable_hashes(_col(texts, "text"))
    distinct.update_hashes("text", text_hashes, langs)
    return distinct, text_hashes


BANDS = pa.schema([("band_key", pa.int64()), ("text_hash", pa.int64())])


def text_band_pairs(texts: pa.Table, text_hashes: np.ndarray, threshold: float = near_dup.THRESHOLD
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(band_key, text_hash) rows of an input's distinct texts (near_dup.band_rows), in text-hash
    then band order, unsorted by key (the exchange sorts): one MinHash signature per distinct
    text (by its hash, the one distinct_counts computed), only the b x r values the bands use,
    in batches of the whole input (numpy, no Python call per text or shingle). Distinct texts
    give distinct rows, so nothing is deduplicated here."""
    if texts.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    uniq, first = np.unique(np.asarray(text_hashes, dtype=np.uint64), return_index=True)
    distinct_texts = _col(texts, "text").take(pa.array(first, pa.int64()))
    bands, rows = near_dup.lsh_params(threshold, near_dup.NUM_PERM)
    keys, members = [], []
    for s in range(0, len(uniq), NEAR_DUP_BATCH):
        sigs = near_dup.signatures(distinct_texts.slice(s, NEAR_DUP_BATCH), values=bands * rows)
        k, m = near_dup.band_rows(sigs, uniq[s:s + NEAR_DUP_BATCH].view(np.int64), bands, rows)
        keys.append(k)
        members.append(m)
    return np.concatenate(keys), np.concatenate(members)


NEAR_DUP_BATCH = 4096  # distinct texts per signature batch (bounded temporaries)


def band_bucket(keys: np.ndarray, buckets: int) -> np.ndarray:
    """The band bucket of each band key: equal ranges of the unsigned 64-bit space (keys are hashes)."""
    u = np.asarray(keys, dtype=np.int64).view(np.uint64)
    return ((u >> np.uint64(32)) * np.uint64(buckets) >> np.uint64(32)).astype(np.int64)


def exchange_bands(bands_files: Sequence[str], buckets: int, path: str) -> int:
    """The band rows of some inputs as one Arrow IPC file of `buckets` record batches (batch b:
    band bucket b, sorted by key then text hash), as exchange_run does for the texts; returns rows."""
    tables = [read_arrow(f) for f in bands_files]
    t = pa.concat_tables(tables).combine_chunks() if tables else BANDS.empty_table()
    return write_pair_run(path, t.column("band_key").to_numpy(), t.column("text_hash").to_numpy(), buckets, BANDS)


def write_pair_run(path: str, keys: np.ndarray, values: np.ndarray, buckets: int, schema: pa.Schema) -> int:
    """(int64 key, int64 value) pairs as one exchange run: an Arrow IPC file of `buckets` record
    batches, batch b holding the keys of band_bucket b, sorted by unsigned key (band_bucket is
    monotone in it, so this is also bucket order) then value; returns the rows."""
    order = near_dup.pair_order(keys.view(np.uint64), values)
    keys, values = keys[order], values[order]
    cuts = np.searchsorted(band_bucket(keys, buckets), np.arange(buckets + 1))
    options = pa.ipc.IpcWriteOptions(use_threads=False)
    with _ipc_sink(path) as sink, pa.ipc.new_file(sink, schema, options=options) as writer:
        for b in range(buckets):
            lo, hi = int(cuts[b]), int(cuts[b + 1])
            writer.write_batch(pa.RecordBatch.from_arrays([pa.array(keys[lo:hi], pa.int64()),
                                                           pa.array(values[lo:hi], pa.int64())], schema=schema))
    return len(keys)


def cluster_band_bucket(k: int, runs: Sequence[str]) -> dict:
    """Band bucket k of the band exchange -> the components of its collisions: a result whose
    "components" are (text hashes, cluster ids) of the texts that share a band key with another."""
    cpu0 = time.process_time()
    t = read_run_batches(runs, k, BANDS)
    nodes, roots = near_dup.components(*near_dup.star_edges(t.column("band_key").to_numpy(),
                                                            t.column("text_hash").to_numpy()))
    result = new_result(band_rows=t.num_rows, cpu_seconds_clusters=time.process_time() - cpu0)
    result["components"] = (nodes, roots)
    return result


def merge_components(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Components of components (near_dup.components on their (node, root) rows as edges):
    (sorted text hashes, cluster id = the smallest member's hash)."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return near_dup.components(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def cluster_stats(unique: pa.Table, clusters: tuple[np.ndarray, np.ndarray]) -> dict:
    """Per near-duplicate cluster met in a bucket's unique texts: {cluster id: [texts per
    language, (smallest hash, its text), (largest hash, its text)]} (merge_results merges them).
    Vectorised over the rows: Python work per cluster met, not per text."""
    nodes, roots = clusters
    if unique.num_rows == 0 or len(nodes) == 0:
        return {}
    h = _text_hashes(unique)
    at = np.minimum(np.searchsorted(nodes, h), len(nodes) - 1)
    rows = np.flatnonzero(nodes[at] == h)
    if not len(rows):
        return {}
    cid, hh = roots[at[rows]], h[rows]
    enc = pc.dictionary_encode(_col(unique, "lang").take(pa.array(rows, pa.int64())))
    names = enc.dictionary.to_pylist()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # rows by (cluster, hash): a cluster's first row holds its smallest hash, its last the largest
    order = near_dup.pair_order(cid, hh)
    cid, hh, codes, rows = cid[order], hh[order], codes[order], rows[order]
    starts = np.flatnonzero(np.concatenate(([True], cid[1:] != cid[:-1])))
    ends = np.append(starts[1:], len(cid)) - 1
    pairs, per = np.unique(np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(cid)))) * len(names)
                           + codes, return_counts=True)
    text = _col(unique, "text")
    lo_text = text.take(pa.array(rows[starts], pa.int64())).to_pylist()
    hi_text = text.take(pa.array(rows[ends], pa.int64())).to_pylist()
    out: dict = {}
    keys = cid[starts].tolist()
    lo_h, hi_h = hh[starts].tolist(), hh[ends].tolist()
    for j, c in enumerate(keys):
        out[c] = [{}, (lo_h[j], lo_text[j]), (hi_h[j], hi_text[j])]
    for p, n in zip(pairs.tolist(), per.tolist(), strict=True):
        out[keys[p // len(names)]][0][names[p % len(names)]] = n
    return out


def _text_hashes(table: pa.Table) -> np.ndarray:
    """The rows' text hashes (int64): the stored column, or computed (states without it)."""
    if "text_hash" in table.column_names and table.column("text_hash").null_count == 0:
        return table.column("text_hash").to_numpy()
    return near_dup.text_hashes(_col(table, "text"))


def _merge_clusters(a: dict, b: dict) -> dict:
    out = {c: [dict(v[0]), v[1], v[2]] for c, v in a.items()}
    for c, v in b.items():
        e = out.get(c)
        if e is None:
            out[c] = [dict(v[0]), v[1], v[2]]
            continue
        for lang, n in v[0].items():
            e[0][lang] = e[0].get(lang, 0) + n
        e[1] = min(e[1], v[1])
        e[2] = max(e[2], v[2])
    return out


# --- the per-cluster image cap (near_dup_cap; off by default) ---------------------------------------
#
# Which images of a cluster stay is one global, deterministic choice: the `cap` images with the
# smallest image_keys (a hash of (seed, uuid, purpose) as every random choice here). Found in
# two passes before the bucket tasks count: `cap_candidates` per exchange run keeps, per
# cluster, its `cap` smallest keys (a superset of the global choice's share in that run) and
# regroups them by cluster-id range; `cap_thresholds` per cluster bucket keeps the global `cap`
# smallest and returns, for the clusters with more than `cap` images only, the largest kept key.
# The driver holds only those clusters (at most images / cap of them); group_bucket drops the
# cluster's texts on the other images. A text that is a near-duplicate of no other text is a
# cluster of its own (near_dup.cluster_ids), so the cap also limits one identical text repeated
# over many images.

CAP_PAIRS = pa.schema([("cluster_id", pa.int64()), ("image_key", pa.int64())])
CAP_PURPOSE = "near_dup_cap"
CAP_STAGE, CAP_REASON = "near_dup", "near_dup_cap"


def image_keys(uuids: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """The cap's rank key of each image: 53 bits of balance.uniforms(uuid, seed, 0, CAP_PURPOSE), int64."""
    if isinstance(uuids, pa.ChunkedArray):
        uuids = uuids.combine_chunks()
    return (balance.uniforms(uuids.to_pylist(), seed, 0, CAP_PURPOSE) * float(1 << 53)).astype(np.int64)


def _groups(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start of each run of equal values, the rank of each row inside its run) of a sorted array."""
    starts = np.flatnonzero(np.concatenate(([True], c[1:] != c[:-1]))) if len(c) else np.zeros(0, np.int64)
    rank = np.arange(len(c)) - np.repeat(starts, np.diff(np.append(starts, len(c))))
    return starts, rank


def smallest_per_cluster(cids: np.ndarray, keys: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (cluster id, image key) rows, sorted, with only each cluster's `cap` smallest keys."""
    c, k = near_dup.unique_pairs(cids, keys)
    _starts, rank = _groups(c)
    keep = rank < cap
    return c[keep], k[keep]


def cap_candidates(run_path: str, clusters: tuple[np.ndarray, np.ndarray], cap: int, seed: int, cap_buckets: int,
                   path: str) -> dict:
    """One exchange run's texts -> its candidate (cluster id, image key) rows as an Arrow IPC
    file of `cap_buckets` record batches (batch j: clusters of bucket j, band_bucket's ranges)."""
    cpu0 = time.process_time()
    t = read_arrow(run_path).select(["uuid", "text_hash"])
    cids = near_dup.cluster_ids(t.column("text_hash").to_numpy(), *clusters)
    c, k = smallest_per_cluster(cids, image_keys(t.column("uuid"), seed), cap)
    rows = write_pair_run(path, c, k, cap_buckets, CAP_PAIRS)
    return new_result(cap_candidates=rows, cpu_seconds_cap=time.process_time() - cpu0)


def cap_thresholds(j: int, runs: Sequence[str], cap: int) -> dict:
    """Cluster bucket j of the candidates -> "cap": (sorted ids of the clusters with more than
    `cap` images, the largest image key each keeps); an image is kept when its key <= that."""
    cpu0 = time.process_time()
    t = read_run_batches(runs, j, CAP_PAIRS)
    c, k = near_dup.unique_pairs(t.column("cluster_id").to_numpy(), t.column("image_key").to_numpy())
    starts, rank = _groups(c)
    over = np.flatnonzero(rank == cap)  # the (cap + 1)-th image of a cluster: it is over the cap
    result = new_result(cap_rows=t.num_rows, capped_clusters=len(over),
                        cpu_seconds_cap=time.process_time() - cpu0)
    result["cap"] = (c[over], k[over - 1])
    return result


def merge_caps(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The capped clusters of all cluster buckets, sorted by cluster id (buckets hold disjoint ids)."""
    parts = [p for p in parts if p is not None and len(p[0])]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    c, k = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    order = np.argsort(c, kind="stable")
    return c[order], k[order]


def apply_cap(texts: pa.Table, clusters: tuple[np.ndarray, np.ndarray], cap: tuple[np.ndarray, np.ndarray],
              seed: int) -> tuple[pa.Table, pa.Table]:
    """(the texts that stay, REJECTS rows of those dropped): a text of a capped cluster is
    dropped on an image whose key is above the cluster's largest kept key."""
    capped, largest = cap
    if texts.num_rows == 0 or len(capped) == 0:
        return texts, REJECTS.empty_table()
    cids = near_dup.cluster_ids(_text_hashes(texts), *clusters)
    at = np.minimum(np.searchsorted(capped, cids), len(capped) - 1)
    rows = np.flatnonzero(capped[at] == cids)
    drop = np.zeros(texts.num_rows, dtype=bool)
    if len(rows):
        keys = image_keys(_col(texts, "uuid").take(pa.array(rows, pa.int64())), seed)
        drop[rows[keys > largest[at[rows]]]] = True
    if not drop.any():
        return texts, REJECTS.empty_table()
    gone = np.flatnonzero(drop)
    take = pa.array(gone, pa.int64())
    details = [inputs.excerpt(f"{u} {x}") for u, x in zip(_col(texts, "url").take(take).to_pylist(),
                                                          _col(texts, "text").take(take).to_pylist(), strict=True)]
    n = len(gone)
    rejects = pa.table({"stage": pa.array([CAP_STAGE] * n, pa.string()),
                        "reason": pa.array([CAP_REASON] * n, pa.string()),
                        # the state has no input path: the cluster the text was dropped from instead
                        "source": pa.array([f"near_dup cluster {c}" for c in cids[gone].tolist()], pa.string()),
                        "detail": pa.array(details, pa.string())}, schema=REJECTS).sort_by(REJECT_ORDER)
    return texts.filter(pa.array(~drop)), rejects


def cap_rejects_name(k: int) -> str:
    return f"near-dup-cap-{part_name(k)}"


def read_distinct(files: Sequence[str], p: int = sketches.DEFAULT_P) -> sketches.DistinctCounts:
    """The merge of some inputs' stored sketches (their state's SKETCHES_FILE)."""
    return sketches.DistinctCounts.merged((sketches.DistinctCounts.from_bytes(storage.read_bytes(f)) for f in files),
                                          p=p)


def uuid_order(uuids: pa.Array) -> np.ndarray:
    """The permutation that sorts uuids; 24-character uuids are compared as three big-endian
    uint64 (numpy lexsort, ~10x faster than a string sort), anything else by Arrow."""
    n = len(uuids)
    if n == 0:
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(uuids.buffers()[1], dtype=np.int32)[uuids.offset:uuids.offset + n + 1]
    if uuids.null_count or not np.all(np.diff(offsets) == 24):
        return pc.sort_indices(uuids).to_numpy()
    data = np.frombuffer(uuids.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[0] + 24 * n]
    keys = data.view(">u8").reshape(n, 3)
    # one stable sort on the first 8 characters; equal prefixes are almost always equal uuids
    # (texts of one image), whose input order a stable sort keeps, as the full sort would
    order = np.argsort(keys[:, 0], kind="stable")
    first = keys[order, 0]
    tie = np.flatnonzero(first[1:] == first[:-1])
    if tie.size and ((keys[order[tie], 1] != keys[order[tie + 1], 1]) |
                     (keys[order[tie], 2] != keys[order[tie + 1], 2])).any():
        return np.lexsort((keys[:, 2], keys[:, 1], keys[:, 0]))
    return order


def read_input_stats(state_dir: str, input_id: str) -> dict | None:
    try:
        return runs.read_json(storage.join(input_state_dir(state_dir, input_id), STATS_FILE))
    except FileNotFoundError:
        return None


def complete_states(state_dir: str) -> set[str] | None:
    """The state keys under an S3 `state_dir` whose state is complete, from one listing (a
    crawl's 90,000 inputs would otherwise be 90,000 requests); None for a local directory,
    where looking at each input's marker is cheap."""
    if not storage.is_s3(state_dir):
        return None
    prefix = storage.join(state_dir, "input_id=")
    return {uri[len(prefix):].split("/", 1)[0] for uri in storage.list_files(state_dir)
            if uri.startswith(prefix) and uri.endswith("/" + STATS_FILE)}


# --- 2. per uuid bucket: matched/, counts, rejects/ ------------------------------------------------


def uuid_range(k: int, buckets: int) -> tuple[str | None, str | None]:
    """[lo, hi) of bucket k as uuid prefixes (None = unbounded): equal shares of the hex space."""
    lo = format(k * _SPAN // buckets, f"0{UUID_PREFIX}x") if k > 0 else None
    hi = format((k + 1) * _SPAN // buckets, f"0{UUID_PREFIX}x") if k + 1 < buckets else None
    return lo, hi


def write_state_texts(table: pa.Table, path: str, compression: str | None = None) -> None:
    """An input's texts (sorted by uuid) as an Arrow IPC file, atomically.

    Why IPC and not Parquet: this file is written once and read once by the bucket tasks of the
    same run (and by incremental reruns); IPC writes at memory speed and is read memory-mapped
    without decoding, where Parquet's encoding and decoding cost more CPU than grouping itself.
    `compression` (None, "lz4" or "zstd") trades that CPU for disk. The [first, last] uuid of
    every record batch is kept in the schema metadata, so a reader skips batches unread.
    """
    table = table.cast(STATE_TEXTS).combine_chunks()
    uuids = table.column("uuid")
    n = table.num_rows
    ranges = [[uuids[s].as_py(), uuids[min(s + STATE_BATCH_ROWS, n) - 1].as_py()]
              for s in range(0, n, STATE_BATCH_ROWS)]
    table = table.replace_schema_metadata({UUID_RANGES_KEY: json.dumps(ranges)})
    write_arrow(table, path, compression, STATE_BATCH_ROWS)


def read_state_texts(path: str, lo: str | None = None, hi: str | None = None) -> pa.Table:
    """The texts with lo <= uuid < hi (None: unbounded) of an input's texts file.

    Memory-mapped: the batches inside the range are not copied, those outside are not read,
    and the two at the edges are sliced (the file is sorted by uuid).
    """
    source = _open_ipc(path, whole=True)
    try:
        reader = pa.ipc.open_file(source)
        meta = reader.schema.metadata or {}
        ranges = json.loads(meta[UUID_RANGES_KEY]) if UUID_RANGES_KEY in meta else None
        batches = []
        for i in range(reader.num_record_batches):
            if ranges is not None:
                first, last = ranges[i]
                if (hi is not None and first >= hi) or (lo is not None and last < lo):
                    continue
            batch = reader.get_batch(i)
            if (lo is not None and batch.column(0)[0].as_py() < lo) or \
                    (hi is not None and batch.column(0)[-1].as_py() >= hi):
                uuid = batch.column(0)
                start = pc.sum(pc.less(uuid, lo)).as_py() or 0 if lo is not None else 0
                stop = pc.sum(pc.less(uuid, hi)).as_py() or 0 if hi is not None else len(uuid)
                batch = batch.slice(start, stop - start)
            if batch.num_rows:
                batches.append(batch)
    finally:
        source.close()  # the batches keep the mapping alive; the file handle is not needed
    return pa.Table.from_batches(batches, schema=STATE_TEXTS).replace_schema_metadata(None)


# --- 2a. the exchange: inputs' texts regrouped by uuid bucket, each input read once ------------------


@functools.lru_cache(maxsize=8)
def _bucket_bounds(buckets: int) -> np.ndarray:
    """The lower uuid bound of buckets 1..buckets-1 (computed once per bucket count)."""
    return np.asarray([uuid_range(k, buckets)[0] for k in range(1, buckets)], dtype=object)


def bucket_offsets(uuids: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Row offsets of the uuid buckets in a uuid-sorted column: bucket k is rows [o[k], o[k+1]).

    Cost O(rows x log buckets) plus a vectorised O(buckets): a small input among many buckets
    places its rows, a large one cuts its rows at the bounds (never a Python loop over buckets).
    """
    values = np.asarray(uuids.to_numpy(zero_copy_only=False), dtype=object)
    bounds = _bucket_bounds(buckets)
    if not len(bounds):
        return np.array([0, len(values)], dtype=np.int64)
    if len(values) < len(bounds):
        counts = np.bincount(np.searchsorted(bounds, values, side="right"), minlength=buckets)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cuts = np.searchsorted(values, bounds, side="left")
    return np.concatenate([[0], cuts, [len(values)]]).astype(np.int64)


def exchange_run(texts_files: Sequence[str], buckets: int, path: str, compression: str | None = None,
                 sketch_files: Sequence[str] = (), bands_files: Sequence[str] = (), band_buckets: int = 0,
                 bands_path: str | None = None) -> dict:
    """One exchange task: the texts of some inputs (their state files, in input order) as one
    Arrow IPC file of exactly `buckets` record batches, batch k holding bucket k's rows.

    Why: a bucket task then reads one batch (O(1), memory-mapped) from each of the exchange's
    runs instead of a slice of every input, so the opens of the whole exchange are
    inputs + runs x buckets with a fixed number of runs: linear in the data, where opening every
    input for every bucket grew with inputs x buckets. Each input is read once, and only these
    inputs' memory maps are held. Rows keep input order inside a bucket, as reading the inputs
    one by one did (grouping sorts them anyway).
    """
    cpu0 = time.process_time()
    pieces: list[list[pa.Table]] = [[] for _ in range(buckets)]  # per bucket: slices, in input order
    for f in texts_files:
        t = read_state_texts(f)
        c = bucket_offsets(t.column("uuid"), buckets)
        for k in np.flatnonzero(c[1:] > c[:-1]).tolist():  # only the buckets this input has rows in
            pieces[k].append(t.slice(c[k], c[k + 1] - c[k]))
    options = pa.ipc.IpcWriteOptions(compression=compression, use_threads=False)
    rows = 0
    with _ipc_sink(path) as sink, pa.ipc.new_file(sink, STATE_TEXTS, options=options) as writer:
        for k in range(buckets):
            batch = pa.concat_tables(pieces[k]).combine_chunks().to_batches() if pieces[k] else []
            writer.write_batch(batch[0] if batch else pa.RecordBatch.from_pylist([], schema=STATE_TEXTS))
            rows += batch[0].num_rows if batch else 0
    result = new_result(exchanged=rows, opens_exchange=len(texts_files) + len(sketch_files))
    if sketch_files:
        result["distinct"] = read_distinct(sketch_files).to_bytes(level=1)  # in flight to the driver
    if bands_path is not None:  # the near-duplicate band keys, regrouped by band bucket the same way
        result["totals"]["band_rows"] = exchange_bands(bands_files, band_buckets, bands_path)
        result["totals"]["opens_exchange"] += len(bands_files)
    result["totals"]["cpu_seconds_exchange"] = time.process_time() - cpu0
    return result


def read_run_batches(runs: Sequence[str], k: int, schema: pa.Schema) -> pa.Table:
    """Batch k of every run of an exchange (memory-mapped locally, ranged GETs on S3; no copy)."""
    batches = []
    for path in runs:
        source = _open_ipc(path)
        try:
            batch = pa.ipc.open_file(source).get_batch(k)
        finally:
            source.close()  # the batch keeps the mapping alive; the file handle is not needed
        if batch.num_rows:
            batches.append(batch)
    return pa.Table.from_batches(batches, schema=schema)


def read_bucket(runs: Sequence[str], k: int) -> pa.Table:
    """Bucket k of the exchange of texts by uuid: batch k of every run."""
    return read_run_batches(runs, k, STATE_TEXTS)


def _adjacent_equal(arr: pa.Array) -> np.ndarray:
    """x[i] == x[i - 1] for i >= 1 (bool, length n - 1)."""
    n = len(arr)
    if n < 2:
        return np.zeros(max(n - 1, 0), dtype=bool)
    return pc.equal(arr.slice(1), arr.slice(0, n - 1)).to_numpy(zero_copy_only=False)


def _col(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def group_texts(texts: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(matched rows: one per image with its texts sorted and unique; those unique texts, flat)."""
    t = texts.sort_by(TEXT_ORDER)
    if t.num_rows == 0:
        return MATCHED.empty_table(), t
    dup = _adjacent_equal(_col(t, "uuid")) & _adjacent_equal(_col(t, "text"))
    if dup.any():
        t = t.filter(pa.array(np.concatenate([[True], ~dup])))
    n = t.num_rows
    uuid = _col(t, "uuid")
    starts = np.flatnonzero(np.concatenate([[True], ~_adjacent_equal(uuid)]))
    offsets = pa.array(np.append(starts, n).astype(np.int32), pa.int32())
    struct = pa.StructArray.from_arrays([_col(t, f.name) for f in MATCHED_TEXT], fields=list(MATCHED_TEXT))
    idx = pa.array(starts, pa.int64())
    matched = pa.Table.from_arrays([uuid.take(idx), _col(t, "url").take(idx),
                                    pa.ListArray.from_arrays(offsets, struct)], schema=MATCHED)
    return matched, t


def entry_counts(langs: pa.Array | pa.ChunkedArray, entry_ids: pa.Array | pa.ChunkedArray) -> dict:
    """A task result: texts per language and, per language, how many texts contain each entry id."""
    if isinstance(langs, pa.ChunkedArray):
        langs = langs.combine_chunks()
    if isinstance(entry_ids, pa.ChunkedArray):
        entry_ids = entry_ids.combine_chunks()
    result = new_result()
    if len(langs) == 0:
        return result
    enc = pc.dictionary_encode(langs)
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = enc.dictionary.to_pylist()
    lengths = pc.list_value_length(entry_ids).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(entry_ids).to_numpy(zero_copy_only=False).astype(np.int64)
    keys, counts = np.unique((np.repeat(codes, lengths) << 32) | values, return_counts=True)
    key_lang = keys >> 32
    bounds = np.searchsorted(key_lang, np.arange(len(names) + 1))
    for code, (name, n) in enumerate(zip(names, np.bincount(codes, minlength=len(names)).tolist(), strict=True)):
        result["lang_texts"][name] = n
        lo, hi = bounds[code], bounds[code + 1]
        result["counts"][name] = ((keys[lo:hi] & 0xFFFFFFFF).astype(np.int32), counts[lo:hi].astype(np.int64))
    return result


def new_result(**totals: int) -> dict:
    """What a group/curate task returns: totals by name, texts per language, entry counts per language."""
    return {"totals": dict(totals), "lang_texts": {}, "counts": {}}


def merge_results(a: dict, b: dict) -> dict:
    """The sum of two task results (associative and commutative: usable with treeReduce)."""
    out = new_result()
    for key in ("totals", "lang_texts"):
        for name in set(a[key]) | set(b[key]):
            out[key][name] = a[key].get(name, 0) + b[key].get(name, 0)
    cl = [x["clusters"] for x in (a, b) if x.get("clusters") is not None]
    if cl:
        out["clusters"] = cl[0] if len(cl) == 1 else _merge_clusters(cl[0], cl[1])
    for key in ("components", "cap"):  # concatenated; merge_components / merge_caps finish them
        co = [x[key] for x in (a, b) if x.get(key) is not None]
        if co:
            out[key] = co[0] if len(co) == 1 else (np.concatenate([c[0] for c in co]),
                                                   np.concatenate([c[1] for c in co]))
    sk = [x["distinct"] for x in (a, b) if x.get("distinct") is not None]
    if sk:  # HyperLogLog sketches (a task's bytes, or a merge's DistinctCounts): merged by register max,
        # kept decoded: re-encoding after every merge cost the driver more than the merges
        out["distinct"] = sk[0] if len(sk) == 1 else sketches.DistinctCounts.merged(
            x if isinstance(x, sketches.DistinctCounts) else sketches.DistinctCounts.from_bytes(x) for x in sk)
    for lang in set(a["counts"]) | set(b["counts"]):
        parts = [x["counts"][lang] for x in (a, b) if lang in x["counts"]]
        if len(parts) == 1:
            out["counts"][lang] = parts[0]
            continue
        ids = np.concatenate([p[0] for p in parts])
        cnt = np.concatenate([p[1] for p in parts])
        order = np.argsort(ids, kind="stable")
        ids, cnt = ids[order], cnt[order]
        starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
        out["counts"][lang] = (ids[starts].astype(np.int32), np.add.reduceat(cnt, starts).astype(np.int64))
    return out


def counts_table(result: dict) -> pa.Table:
    """COUNTS rows (lang, entry_id, count) of a result, sorted by language and entry id."""
    langs = sorted(result["counts"])
    if not langs:
        return COUNTS.empty_table()
    ids = [result["counts"][x][0] for x in langs]
    return pa.Table.from_arrays(
        [pa.array(np.repeat(np.array(langs, dtype=object), [len(i) for i in ids]).tolist(), pa.string()),
         pa.array(np.concatenate(ids).astype(np.int32), pa.int32()),
         pa.array(np.concatenate([result["counts"][x][1] for x in langs]).astype(np.int64), pa.int64())],
        schema=COUNTS)


def part_name(k: int) -> str:
    return f"part-{k:05d}.parquet"


def group_bucket(k: int, buckets: int, runs: Sequence[str], matched_dir: str,
                 picked_dir: str | None = None, seed: int = 0, count_identical_texts: str = "once",
                 clusters: tuple[np.ndarray, np.ndarray] | None = None,
                 cap: tuple[np.ndarray, np.ndarray] | None = None, rejects_dir: str | None = None) -> dict:
    """Bucket k of the exchange's runs -> matched/part-k; returns entry counts, texts per language, totals.

    With `cap` (merge_caps of cap_thresholds: the clusters over the near-duplicate cap), the
    texts of those clusters on images past the cap are dropped first (apply_cap) and written to
    `rejects_dir`/cap_rejects_name(k) when there are any; matched/, the counts and the sample
    see only what remains.

    With `picked_dir`, the text each image offers the offline sample (sampling.pick_texts, epoch
    0) is also written there (picked_path), so the sampling task reads that small file instead
    of matched/ again. `count_identical_texts`: "once" counts an image's identical texts once
    (matched/'s texts), "every" counts every record as MetaCLIP's reference does; the texts per
    language stay those of matched/ either way.
    """
    cpu0 = time.process_time()
    texts = read_bucket(runs, k)
    texts_in = texts.num_rows
    capped = 0
    if cap is not None:
        texts, rejects = apply_cap(texts, clusters, cap, seed)
        capped = rejects.num_rows
        if capped:
            storage.write_table(rejects, storage.join(rejects_dir, cap_rejects_name(k)))
    matched, unique = group_texts(texts)
    storage.write_table(matched, storage.join(matched_dir, part_name(k)), use_dictionary=MATCHED_DICTIONARY,
                  write_statistics=["uuid", "url"])
    if picked_dir is not None:
        picked = [sampling.pick_texts(b, seed, 0) for b in matched.combine_chunks().to_batches()]
        write_arrow(pa.Table.from_batches(picked, schema=CURATED), picked_path(picked_dir, k))
    result = entry_counts(unique.column("lang"), unique.column("entry_ids"))
    if count_identical_texts == "every":
        result["counts"] = entry_counts(texts.column("lang"), texts.column("entry_ids"))["counts"]
    if clusters is not None:
        result["clusters"] = cluster_stats(unique, clusters)
    result["totals"] = {"images": matched.num_rows, "texts_in": texts_in, "opens_group": len(runs),
                        "cpu_seconds_group": time.process_time() - cpu0}
    if cap is not None:
        result["totals"]["near_dup_capped"] = capped
    return result


def picked_path(picked_dir: str, k: int) -> str:
    return storage.join(picked_dir, f"part-{k:05d}.arrow")


@contextlib.contextmanager
def _ipc_sink(uri: str):
    """A sink for one Arrow IPC file that appears whole or not at all: a local file written
    under a temporary name and renamed, or an S3 object uploaded when the file is complete."""
    if storage.is_s3(uri):
        sink = pa.BufferOutputStream()
        yield sink
        storage.write_bytes(uri, sink.getvalue().to_pybytes())
        return
    with storage.atomic_local_path(uri) as tmp, pa.OSFile(tmp, "wb") as sink:
        yield sink


def _open_ipc(uri: str, whole: bool = False):
    """A random-access source of an Arrow IPC file: memory-mapped when local (no copy); on S3
    the whole object in one GET (`whole`), or ranged GETs, so a bucket task fetches only the
    footer and its own record batch of each exchange run."""
    if not storage.is_s3(uri):
        return pa.memory_map(uri)
    if whole:
        return pa.BufferReader(storage.read_bytes(uri))
    return pa.PythonFile(storage.open_read(uri), mode="r")


def write_arrow(table: pa.Table, path: str, compression: str | None = None, batch_rows: int | None = None) -> None:
    """An Arrow IPC file, whole or not at all (_ipc_sink)."""
    options = pa.ipc.IpcWriteOptions(compression=compression, use_threads=False)
    with _ipc_sink(path) as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=batch_rows)


def read_arrow(path: str) -> pa.Table:
    """A whole Arrow IPC file, memory-mapped (the handle is closed; the mapping lives with the data)."""
    source = _open_ipc(path, whole=True)
    try:
        return pa.ipc.open_file(source).read_all()
    finally:
        source.close()


def write_rejects_part(k: int, rejects_files: Sequence[str], rejects_dir: str) -> int:
    """The reject rows of some inputs, sorted -> rejects/part-k; returns the row count."""
    tables = [storage.read_table(f, schema=REJECTS) for f in rejects_files]
    table = pa.concat_tables(tables).sort_by(REJECT_ORDER) if tables else REJECTS.empty_table()
    storage.write_table(table, storage.join(rejects_dir, part_name(k)))
    return table.num_rows


# --- 3. per matched file: curated/ ---------------------------------------------------------------


def curate_part(k: int, matched_dir: str, curated_dir: str, probs_by_lang: Mapping[str, np.ndarray], seed: int,
                epoch: int = 0, picked_dir: str | None = None) -> dict:
    """matched/part-k -> curated/part-k (same uuid order); returns the curated counts and rows.

    With `picked_dir` (epoch 0), the picks group_bucket stored are read instead of matched/.
    Every language of the texts must have entry probabilities (KeyError otherwise): the sampling
    would not keep its images, and here a missing language means entry_probs/ is incomplete.
    """
    cpu0 = time.process_time()
    if picked_dir is not None and epoch == 0:
        picked = read_arrow(picked_path(picked_dir, k))
        sampling.require_probabilities(picked.column("lang"), probs_by_lang)
        out = [b for batch in picked.to_batches()
               for b in sampling.keep_picked(batch, probs_by_lang=probs_by_lang, seed=seed, epoch=epoch)]
    else:
        matched = storage.read_table(storage.join(matched_dir, part_name(k)), schema=MATCHED)
        sampling.require_probabilities(pc.struct_field(pc.list_flatten(matched.column("texts")), "lang"),
                                       probs_by_lang)
        out = list(sampling.curate_batches(matched.to_batches(), probs_by_lang=probs_by_lang, seed=seed,
                                           epoch=epoch))
    curated = pa.Table.from_batches(out, schema=CURATED)
    storage.write_table(curated, storage.join(curated_dir, part_name(k)), use_dictionary=CURATED_DICTIONARY,
                  write_statistics=["uuid", "url"])
    result = entry_counts(curated.column("lang"), curated.column("entry_ids"))
    result["totals"] = {"curated": curated.num_rows, "cpu_seconds_curate": time.process_time() - cpu0}
    return result


# --- counts -> thresholds -> entry probabilities (curation.balance on the counts table) ----------


def dense_counts(table: pa.Table, num_entries: dict[str, int]) -> dict[str, np.ndarray]:
    """(lang, entry_id, count) rows -> per metadata language a dense int64 vector indexed by entry id."""
    out = {lang: np.zeros(n, dtype=np.int64) for lang, n in num_entries.items()}
    if table.num_rows == 0:
        return out
    langs = table.column("lang").to_pylist()
    ids = table.column("entry_id").to_numpy()
    counts = table.column("count").to_numpy()
    order = {}
    for i, lang in enumerate(langs):
        order.setdefault(lang, []).append(i)
    for lang, idx in order.items():
        if lang not in out:
            raise ValueError(f"counts for language {lang!r} that the metadata does not have")
        out[lang][ids[idx]] = counts[idx]
    return out


def balance_counts(counts: pa.Table, num_entries: Mapping[str, int], t_en: float, en_lang: str = "en",
                   matched_by_lang: Mapping[str, int] | None = None):
    """counts rows -> (dense counts, per-language thresholds, entry probabilities) of every metadata language.

    Languages without a single match take part with all-zero counts (t = 0, probabilities 1),
    so entry_probs/ covers every language the metadata has.
    """
    counts_by_lang = dense_counts(counts, num_entries)
    thresholds = balance.language_thresholds(counts_by_lang, t_en, en=en_lang)
    for lang, th in thresholds.items():
        th["matched_texts"] = int((matched_by_lang or {}).get(lang, 0))
    probs = {lang: balance.entry_probabilities(counts_by_lang[lang], thresholds[lang]["t"]) for lang in counts_by_lang}
    return counts_by_lang, thresholds, probs
