#!/usr/bin/env python
"""The curate job: WAT / url+text tables in, balanced Parquet out (README.md, "What it does" step 2).

One run: input planning, per-input state, fingerprints, the Spark phases below (task bodies in
curation.grouping), balancing, the report and the manifest; the output's layout is
curation.layout.CurateOutput.

Phases:
  1. per input file: parse -> LID -> match, stored as per-input state under
     <state dir>/<settings fingerprint>/input_id=<id>-<input version>/ (default state dir:
     .<output name>.state beside the output), outside any staging area: an input whose state
     is complete (stats.json) is never read again, by a rerun, an incremental cron run or the
     rerun of a run that failed or was killed in a later phase;
  2. per uuid bucket: identical texts of an image once -> matched/, (lang, entry_id) counts, rejects/;
  3. counts/ -> thresholds.json -> entry_probs/<lang>.npy -> curated/ (offline sample, epoch 0);
  4. report.json, report.html, _MANIFEST.json, then _SUCCESS: the whole directory is built in a
     staging directory and published by rename (curation.storage.publish).
Spark only schedules the tasks and sums narrow (lang, entry_id, count) rows; the texts never
enter the JVM. This module is the job: the library (curation/) has no Spark in it.

    python jobs/curate.py --input 'build/sample/wat/*.wat.gz' --metadata build/sample/metadata --output out
    spark-submit jobs/curate.py --config infra/curate.json
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)



import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable, Iterator, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from curation import (  # noqa: E402
    accounting,
    annotate,
    grouping,
    layout,
    report,
    runs,
    sketches,
    storage,
)
from curation.curate_config import CurateConfig, add_arguments, config_from_args  # noqa: E402
from curation.inputs import CODE_FILES as INPUT_CODE_FILES  # noqa: E402
from curation.inputs import check_input, input_format  # noqa: E402
from curation.layout import CurateOutput  # noqa: E402
from curation.metadata_dir import MANIFEST as METADATA_MANIFEST  # noqa: E402
from jobs.common import (  # noqa: E402
    Counted,
    PhaseProgress,
    build_spark,
    progress_mode,
    run_tasks,
    task_env,
    user_error,
)
from jobs.common import broadcast_value as _value  # noqa: E402
from jobs.common import result_total as _total  # noqa: E402

JOB = "curate"
APP_NAME = "worldclip-curate"
# the code that decides the output: a change invalidates the per-input state of earlier runs
CODE_FILES = ("curation/annotate.py", "curation/grouping.py", "jobs/curate.py", *INPUT_CODE_FILES,
              "curation/urls.py", "curation/text.py", "curation/lid.py", "curation/languages.py",
              "curation/matcher.py", "curation/balance.py", "curation/sampling.py", "curation/schemas.py",
              "curation/scripts.py", "curation/sketches.py", "curation/near_dup.py", "curation/decontam.py")


class InjectedFailure(RuntimeError):
    """Raised by the `fail_after` testing hook."""


# --- inputs ------------------------------------------------------------------------------------


def input_id(path: str) -> str:
    """Stable id of an input (in its rows and reject records); starts with a letter so it stays a string."""
    return "i" + hashlib.sha1(path.encode("utf-8")).hexdigest()[:20]


def state_key(path: str, stamp: dict) -> str:
    """The name of an input's state: its id and its version (a changed input gets new state,
    so state written for the old version can never be mistaken for the new one's)."""
    version = hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
    return f"{input_id(path)}-{version}"


def state_root(cfg: CurateConfig) -> str:
    """Where per-input state lives: --state-dir, else `.<name>.state` beside the output. Outside
    any staging area, so a run that fails or is killed after phase 1 keeps what it computed."""
    if cfg.state_dir:
        return cfg.state_dir if storage.is_s3(cfg.state_dir) else os.path.abspath(cfg.state_dir)
    if storage.is_s3(cfg.output):
        parent, _, name = cfg.output.rstrip("/").rpartition("/")
        return storage.join(parent, f".{name}.state")
    parent, name = os.path.split(storage.resolve_local(cfg.output))
    return os.path.join(parent, f".{name}.state")


def output_uri(cfg: CurateConfig) -> str:
    """--output as the job writes it: an s3:// URI as given, a local path made absolute."""
    return cfg.output if storage.is_s3(cfg.output) else os.path.abspath(cfg.output)


def input_stamp(path: str) -> dict:
    """What identifies the version of an input: size and mtime (local) or ETag (S3)."""
    if storage.is_s3(path):
        bucket, key = storage.split_s3(path)
        head = storage.s3_client().head_object(Bucket=bucket, Key=key)
        return {"size": int(head["ContentLength"]), "etag": head.get("ETag", "")}
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def plan_inputs(inputs: list[str], state_dir: str, incremental: bool):
    """(reused input ids, new inputs, ledger entries, state key per input id): an input is reused
    when `state_dir` (the state of one settings fingerprint) holds complete state of its version."""
    if any(storage.is_s3(p) for p in inputs):  # one HEAD request each: do them concurrently
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(32) as pool:
            stamps = list(pool.map(input_stamp, inputs))
    else:
        stamps = [input_stamp(p) for p in inputs]
    reused, new, ledger, keys = [], [], {}, {}
    complete = grouping.complete_states(state_dir) if incremental else None  # S3: one listing
    for path, stamp in zip(inputs, stamps, strict=True):
        iid = input_id(path)
        ledger[iid] = {"path": path, **stamp}
        keys[iid] = state_key(path, stamp)
        if not incremental:
            new.append(path)
        elif complete is not None and keys[iid] in complete \
                or complete is None and grouping.read_input_stats(state_dir, keys[iid]) is not None:
            reused.append(iid)
        else:
            new.append(path)
    return reused, new, ledger, keys


# --- versions / fingerprints ------------------------------------------------------------------


def read_metadata_manifest(uri: str) -> dict:
    """The metadata's manifest, plus "manifest_sha256": the digest of its bytes, which the tasks
    check (annotate.worker_resources) so a run never mixes two versions of the metadata."""
    try:
        data = storage.read_bytes(storage.join(uri, METADATA_MANIFEST))
        return {**json.loads(data), "manifest_sha256": hashlib.sha256(data).hexdigest()}
    except FileNotFoundError:
        raise FileNotFoundError(f"--metadata {uri} is not a metadata directory (no {METADATA_MANIFEST}): build one "
                                "with `make metadata` or jobs/build_metadata.py") from None


def lid_model_id(path: str | None) -> dict:
    from curation.lid import default_model_path

    path = path or os.environ.get("WORLDCLIP_LID_MODEL") or default_model_path()
    st = os.stat(path)
    return {"path": path, "size": st.st_size}


def stage1_fingerprint(cfg: CurateConfig, metadata_version: str, lid: dict, code: str,
                       decontam_digest: str | None = None) -> str:
    doc = {"config": cfg.stage1_fingerprint(), "metadata_version": metadata_version, "lid": lid,
           "code": code.split("+src.")[-1]}
    if decontam_digest is not None:  # the evaluation sets' index decides which texts the state keeps
        doc["decontam"] = decontam_digest
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# --- output helpers ------------------------------------------------------------------------------


def n_files(rows: int, rows_per_file: int) -> int:
    return max(1, math.ceil(rows / rows_per_file))


def write_table_files(table: pa.Table, path: str, files: int) -> None:
    """A small sorted table (counts) written by the driver as `files` consecutive slices."""
    storage.makedirs(path)
    per = max(1, math.ceil(table.num_rows / files))
    for k in range(files):
        storage.write_table(table.slice(k * per, per), storage.join(path, grouping.part_name(k)))


def reject_chunks(input_ids: list[str], reject_rows: dict[str, int], parts: int) -> list[list[str]]:
    """Inputs with reject rows, in input order, split into `parts` consecutive chunks (rejects/part-k)."""
    with_rows = [i for i in input_ids if reject_rows.get(i, 0)]
    chunks: list[list[str]] = [[] for _ in range(parts)]
    for j, iid in enumerate(with_rows):
        chunks[j * parts // len(with_rows)].append(iid)
    return chunks


def build_decontam(cfg: CurateConfig) -> dict | None:
    """The decontamination index of cfg's evaluation sets, built once on the driver: {"bytes",
    "digest", "stats", "files"}; None when no evaluation set is given (off)."""
    if not cfg.decontam_captions and not cfg.decontam_urls:
        return None
    from curation import decontam

    captions = storage.expand(cfg.decontam_captions) if cfg.decontam_captions else []
    urls = storage.expand(cfg.decontam_urls) if cfg.decontam_urls else []
    index = decontam.index_from_files(captions, urls, text_threshold=cfg.decontam_text_threshold)
    data = index.to_bytes()
    return {"bytes": data, "digest": decontam.index_digest(data), "stats": index.stats(),
            "files": {"captions": captions, "urls": urls}}


MAX_CLUSTERS_SHOWN = 20  # near-duplicate clusters in the report


def near_dup_report(cfg: CurateConfig, clusters, stats: dict | None, matched_by_lang: dict,
                    capping: dict | None = None, capped: int = 0) -> dict | None:
    """The near-duplicate clusters for the report: how many, the largest (by matched texts) with
    two example texts each, and per language the share of matched texts that are in a cluster
    (after the cap, when one is set: `capping` is near_dup_cap's result, `capped` the texts dropped)."""
    if clusters is None:
        return None
    nodes, roots = clusters
    stats = stats or {}
    by_lang: dict[str, int] = {}
    largest = []
    for cid, (langs, lo, hi) in stats.items():
        for lang, n in langs.items():
            by_lang[lang] = by_lang.get(lang, 0) + n
        largest.append((-sum(langs.values()), cid, langs, lo, hi))
    largest.sort(key=lambda x: (x[0], x[1]))
    sizes = np.unique(roots, return_counts=True)[1] if len(roots) else np.zeros(0, np.int64)
    distinct_per = dict(zip(np.unique(roots).tolist(), sizes.tolist(), strict=True)) if len(roots) else {}
    from curation.inputs import excerpt

    return {
        "definition": (f"texts whose shingle sets have Jaccard >= {cfg.near_dup_threshold} are joined when their "
                       "MinHash signatures share an LSH band; clusters are the connected components, id = the "
                       "smallest member text hash. Matched texts count an image's identical texts once."),
        "threshold": cfg.near_dup_threshold,
        "clusters": int(len(distinct_per)),
        "clustered_texts": int(len(nodes)),
        "cap": cfg.near_dup_cap or None,
        **({"capped_texts": int(capped), "capped_clusters": int(capping["totals"].get("capped_clusters", 0))}
           if capping is not None else {}),
        "by_lang": {lang: {"texts": n, "share": n / matched_by_lang[lang] if matched_by_lang.get(lang) else 0.0}
                    for lang, n in sorted(by_lang.items(), key=lambda kv: (-kv[1], kv[0]))},
        "largest": [{"id": str(cid), "texts": -neg, "distinct_texts": int(distinct_per.get(cid, 0)),
                     "by_lang": dict(sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))),
                     "examples": [excerpt(lo[1])] + ([excerpt(hi[1])] if hi[0] != lo[0] else [])}
                    for neg, cid, langs, lo, hi in largest[:MAX_CLUSTERS_SHOWN]],
    }


MAX_DECONTAM_EXAMPLES = 30  # in the report


def decontam_report(decontam: dict | None, acct, per_input: dict, ids: list[str]) -> dict | None:
    """What decontamination dropped, for the report: by reason, by language, the first examples."""
    if decontam is None:
        return None
    stage = acct.to_dict().get("decontam", {"in": 0, "out": 0, "rejected": {}})
    by_lang: dict[str, int] = {}
    examples = []
    for iid in ids:
        d = per_input[iid].get("decontam") or {}
        for lang, n in d.get("by_lang", {}).items():
            by_lang[lang] = by_lang.get(lang, 0) + int(n)
        examples += d.get("examples", [])
    examples.sort(key=lambda e: (e["reason"], e["text"], e["url"]))
    return {"checked": int(stage["in"]), "dropped": int(stage["in"] - stage["out"]),
            "by_reason": dict(stage["rejected"]), "by_lang": dict(sorted(by_lang.items(), key=lambda kv: (-kv[1], kv[0]))),
            "examples": examples[:MAX_DECONTAM_EXAMPLES],
            "index": {k: v for k, v in decontam["stats"].items() if k in ("urls", "captions", "captions_too_short",
                                                                          "text_threshold")}}


def _check_hook(cfg: CurateConfig, phase: str) -> None:
    if cfg.fail_after == phase:
        raise InjectedFailure(f"fail_after={phase!r}: injected failure (testing hook)")


# --- task bodies (RDD partitions of task ids around the library's per-input / per-bucket work) ------




def exchange_partition(task_ids: Iterable[int], *, buckets: int, state_dir: str, chunks, exchange_dir: str,
                       compression: str | None, env: dict | None = None, band_buckets: int = 0) -> Iterator[dict]:
    """RDD partition body over task ids: task m writes the exchange run of input chunk m (and,
    with `band_buckets`, the run of its near-duplicate band keys)."""
    chunks = _value(chunks)
    os.environ.update(env or {})
    for m in task_ids:
        dirs = [grouping.input_state_dir(state_dir, key) for key in chunks[m]]
        yield grouping.exchange_run([storage.join(d, grouping.TEXTS_FILE) for d in dirs], buckets,
                                    exchange_run_path(exchange_dir, m), compression,
                                    sketch_files=[storage.join(d, grouping.SKETCHES_FILE) for d in dirs],
                                    bands_files=[storage.join(d, grouping.BANDS_FILE) for d in dirs] if band_buckets
                                    else (), band_buckets=band_buckets,
                                    bands_path=bands_run_path(exchange_dir, m) if band_buckets else None)


def bands_run_path(exchange_dir: str, m: int) -> str:
    return storage.join(exchange_dir, f"bands-{m:05d}.arrow")


def clusters_partition(task_ids: Iterable[int], *, runs: int, exchange_dir: str, env: dict | None = None):
    """RDD partition body over band bucket ids: the components of each bucket's band collisions."""
    os.environ.update(env or {})
    files = [bands_run_path(exchange_dir, m) for m in range(runs)]
    for k in task_ids:
        yield grouping.cluster_band_bucket(k, files)


def cap_run_path(exchange_dir: str, m: int) -> str:
    return storage.join(exchange_dir, f"cap-{m:05d}.arrow")


def cap_candidates_partition(task_ids: Iterable[int], *, exchange_dir: str, clusters, cap: int, seed: int,
                             cap_buckets: int, env: dict | None = None):
    """RDD partition body over exchange run ids: run m's candidate (cluster, image key) rows."""
    clusters = _value(clusters)
    os.environ.update(env or {})
    for m in task_ids:
        yield grouping.cap_candidates(exchange_run_path(exchange_dir, m), clusters, cap, seed, cap_buckets,
                                      cap_run_path(exchange_dir, m))


def cap_thresholds_partition(task_ids: Iterable[int], *, runs: int, exchange_dir: str, cap: int,
                             env: dict | None = None):
    """RDD partition body over cluster bucket ids: the clusters over the cap and their largest kept key."""
    os.environ.update(env or {})
    files = [cap_run_path(exchange_dir, m) for m in range(runs)]
    for j in task_ids:
        yield grouping.cap_thresholds(j, files, cap)


def exchange_run_path(exchange_dir: str, m: int) -> str:
    return storage.join(exchange_dir, f"run-{m:05d}.arrow")


def group_partition(task_ids: Iterable[int], *, buckets: int, state_dir: str, runs: int, exchange_dir: str,
                    reject_chunks, matched_dir: str, rejects_dir: str, picked_dir: str | None = None,
                    seed: int = 0, env: dict | None = None, count_identical_texts: str = "once",
                    clusters=None, cap=None) -> Iterator[dict]:
    """RDD partition body over task ids: task k groups bucket k (k < buckets) of the exchange's
    `runs` runs and writes reject part k (k < len(reject_chunks), a Spark broadcast or a list);
    `clusters`: the near-duplicate (text hashes, cluster ids), a broadcast, or None."""
    chunks = _value(reject_chunks)
    clusters = _value(clusters)
    cap = _value(cap)
    os.environ.update(env or {})
    run_files = [exchange_run_path(exchange_dir, m) for m in range(runs)]
    for k in task_ids:
        result = grouping.group_bucket(k, buckets, run_files, matched_dir, picked_dir, seed,
                                       count_identical_texts, clusters, cap, rejects_dir) if k < buckets \
            else grouping.new_result()
        if k < len(chunks):
            files = [storage.join(grouping.input_state_dir(state_dir, i), grouping.REJECTS_FILE) for i in chunks[k]]
            result["totals"]["rejects"] = grouping.write_rejects_part(k, files, rejects_dir)
        yield result


def curate_partition(task_ids: Iterable[int], *, matched_dir: str, curated_dir: str, probs_by_lang, seed: int,
                     epoch: int = 0, picked_dir: str | None = None, env: dict | None = None) -> Iterator[dict]:
    """RDD partition body over task ids; `probs_by_lang` may be a Spark broadcast."""
    probs = _value(probs_by_lang)
    os.environ.update(env or {})
    for k in task_ids:
        yield grouping.curate_part(k, matched_dir, curated_dir, probs, seed, epoch, picked_dir)


def input_partition(rows: Iterable[tuple[str, str, str, str]], *, state_dir: str, metadata: str, lid_model: str | None,
                    url_col: str, text_col: str, batch_size: int, min_lid_prob: float, count_only: Sequence[str],
                    sample_every: int = 0, sample_max: int = 0, env: dict | None = None,
                    manifest_sha256: str | None = None,
                    max_loaded: int = 16, cache_dir: str | None = None, state_compression: str | None = None,
                    max_loaded_mb: float = 0, lid_script_check: bool = True, decontam=None,
                    decontam_digest: str | None = None,
                    near_dup_threshold: float | None = None) -> Iterator[tuple[str, dict]]:
    """RDD partition body: (path, input_id, format, state key) -> (input_id, stats) per input;
    `env`: the driver's S3 settings (jobs.common.task_env); `decontam`: the bytes of a
    curation.decontam.DecontamIndex (a Spark broadcast), or None."""
    from curation import decontam as decontam_index

    if env:
        os.environ.update(env)
    index = decontam_index.load_index(_value(decontam), decontam_digest) if decontam is not None else None
    res = annotate.worker_resources(metadata, lid_model, max_loaded, cache_dir, max_loaded_mb,
                                    expected_manifest_sha256=manifest_sha256, lid_script_check=lid_script_check)
    for path, iid, fmt, key in rows:
        yield iid, grouping.process_input(path, iid, fmt, state_dir, res, state_key=key, url_col=url_col, text_col=text_col,
                                 batch_size=batch_size, min_lid_prob=min_lid_prob, count_only=count_only,
                                 sample_every=sample_every, sample_max=sample_max,
                                 state_compression=state_compression, decontam=index,
                                 near_dup_threshold=near_dup_threshold)


# --- the phases (RDDs of task ids: no SQL planning, no rows for the JVM to convert) -----------------


def _input_texts(result) -> int:
    return result[1]["texts"]




def process_inputs(spark, cfg: CurateConfig, new_inputs: list[str], state_dir: str, keys: dict[str, str],
                   mode: str | None = None, manifest_sha256: str | None = None,
                   decontam: bytes | None = None) -> dict[str, dict]:
    """Phase 1 on Spark: per-input state files under `state_dir`/<state key>; returns {input_id: stats}.
    `decontam`: the decontamination index's bytes (broadcast once per executor), or None."""
    rows = [(p, input_id(p), input_format(p, cfg.input_format), keys[input_id(p)]) for p in new_inputs]
    tasks = cfg.partitions or min(len(new_inputs), 10_000)
    storage.makedirs(state_dir)
    body = functools.partial(
        input_partition, state_dir=state_dir, metadata=cfg.metadata, lid_model=cfg.lid_model,
        url_col=cfg.url_col, text_col=cfg.text_col, batch_size=cfg.batch_size, min_lid_prob=cfg.min_lid_prob,
        count_only=tuple(cfg.sampled_reasons), sample_every=cfg.reject_sample_every,
        sample_max=cfg.reject_sample_max, env=task_env(cfg.metadata, state_dir, *new_inputs),
        manifest_sha256=manifest_sha256,
        max_loaded=cfg.max_loaded_automata, cache_dir=cfg.cache_dir,
        state_compression=cfg.state_compression, max_loaded_mb=cfg.max_automata_mb,
        lid_script_check=cfg.lid_script_check, near_dup_threshold=cfg.near_dup_threshold if cfg.near_dup else None)
    sc = spark.sparkContext
    bc = sc.broadcast(decontam) if decontam else None
    if bc is not None:
        from curation.decontam import index_digest

        body = functools.partial(body, decontam=bc, decontam_digest=index_digest(decontam))
    try:
        with PhaseProgress(sc, "curate 1/4 read+LID+match", len(rows), "inputs", "texts", mode) as p:
            return dict(sc.parallelize(rows, tasks).mapPartitions(Counted(body, p.done, p.items, _input_texts))
                        .collect())
    finally:
        if bc is not None:
            bc.unpersist()


def exchange(spark, state_dir: str, state_keys: list[str], buckets: int, runs: int, exchange_dir: str,
             compression: str | None, mode: str | None = None, band_buckets: int = 0) -> dict:
    """Phase 2a on Spark: `runs` tasks, each regrouping a contiguous chunk of the inputs by bucket
    (and their near-duplicate band keys by band bucket, when `band_buckets`)."""
    storage.makedirs(exchange_dir)
    chunks = [state_keys[m * len(state_keys) // runs:(m + 1) * len(state_keys) // runs] for m in range(runs)]
    body = functools.partial(exchange_partition, buckets=buckets, state_dir=state_dir, exchange_dir=exchange_dir,
                             compression=compression, env=task_env(state_dir, exchange_dir), band_buckets=band_buckets)
    return run_tasks(spark, runs, body, grouping.merge_results, grouping.new_result, mode=mode,
                     progress=("curate 2/4 exchange", "runs", "texts", _total("exchanged")),
                     broadcast={"chunks": chunks})


def group_and_count(spark, state_dir: str, runs: int, exchange_dir: str, buckets: int, chunks: list[list[str]],
                    matched_dir: str, rejects_dir: str, picked_dir: str | None = None, seed: int = 0,
                    mode: str | None = None, count_identical_texts: str = "once", clusters=None, cap=None) -> dict:
    """Phase 2b on Spark: matched/ and rejects/ files (and each image's pick for the sample in
    `picked_dir`); returns the summed task results."""
    for d in (matched_dir, rejects_dir, picked_dir):
        if d is not None:
            storage.makedirs(d)
    body = functools.partial(group_partition, buckets=buckets, state_dir=state_dir, runs=runs,
                             exchange_dir=exchange_dir, matched_dir=matched_dir, rejects_dir=rejects_dir,
                             picked_dir=picked_dir, seed=seed, env=task_env(state_dir, matched_dir),
                             count_identical_texts=count_identical_texts)
    return run_tasks(spark, max(buckets, len(chunks)), body, grouping.merge_results, grouping.new_result, mode=mode,
                     progress=("curate 3/4 group per image", "buckets", "texts", _total("texts_in")),
                     broadcast={"reject_chunks": chunks, **({"clusters": clusters} if clusters is not None else {}),
                                **({"cap": cap} if cap is not None else {})})


def near_dup_cap(spark, runs: int, exchange_dir: str, clusters, cap: int, seed: int, cap_buckets: int,
                 mode: str | None = None) -> dict:
    """Phase 2a'': the clusters over `cap` images and the largest image key each keeps
    (curation.grouping's cap passes: candidates per exchange run, thresholds per cluster bucket);
    returns the summed results with "cap" = (sorted cluster ids, largest kept keys)."""
    env = task_env(exchange_dir)
    body = functools.partial(cap_candidates_partition, exchange_dir=exchange_dir, cap=cap, seed=seed,
                             cap_buckets=cap_buckets, env=env)
    found = run_tasks(spark, runs, body, grouping.merge_results, grouping.new_result, mode=mode,
                      progress=("curate 2/4 near-duplicate cap: candidates", "runs", "rows", _total("cap_candidates")),
                      broadcast={"clusters": clusters})
    body = functools.partial(cap_thresholds_partition, runs=runs, exchange_dir=exchange_dir, cap=cap, env=env)
    result = run_tasks(spark, cap_buckets, body, grouping.merge_results, grouping.new_result, mode=mode,
                       progress=("curate 2/4 near-duplicate cap: thresholds", "cluster buckets", "rows",
                                 _total("cap_rows")))
    if result["totals"].get("cap_rows", 0) != found["totals"].get("cap_candidates", 0):
        raise RuntimeError(f"the cap exchange moved {result['totals']} rows, its candidates were {found['totals']}")
    result["cap"] = grouping.merge_caps([result.get("cap")])
    result["totals"]["cpu_seconds_cap"] = (result["totals"].get("cpu_seconds_cap", 0.0)
                                           + found["totals"].get("cpu_seconds_cap", 0.0))
    return result


def cluster_near_dups(spark, runs: int, exchange_dir: str, band_buckets: int, mode: str | None = None) -> dict:
    """Phase 2a': one task per band bucket -> the components of its band collisions; the driver
    merges them (components of components: curation.near_dup) into (text hashes, cluster ids).

    Driver memory, per clustered text (a distinct text sharing a band key with another; texts
    near no other are not held): the result it keeps and broadcasts is two int64, 16 bytes (and
    16 bytes more in every Python worker that receives the broadcast). While merging, it holds
    one (node, root) row of 16 bytes per band bucket in which the text collides, at most `bands`
    (5 at the default threshold) and usually 1-2, and near_dup.components' temporaries (np.unique's
    sorted copy and inverse, parent labels, the joined edges): measured with tracemalloc, a peak
    of ~120 bytes per row, ~270 bytes per clustered text at 2 rows each (up to ~600 at 5). E.g.
    10^8 clustered texts: 1.6 GB kept, ~27 GB at the peak. Beyond that the merge wants a distributed connected-components pass
    (near_dup.components is associative, so per-bucket results can be merged in rounds)."""
    body = functools.partial(clusters_partition, runs=runs, exchange_dir=exchange_dir, env=task_env(exchange_dir))
    result = run_tasks(spark, band_buckets, body, grouping.merge_results, grouping.new_result, mode=mode,
                       progress=("curate 2/4 near-duplicate clusters", "band buckets", "band rows",
                                 _total("band_rows")))
    nodes, roots = grouping.merge_components([result.get("components") or (np.zeros(0, np.int64),) * 2])
    return {"nodes": nodes, "roots": roots, "totals": result["totals"]}


def _compression(cfg: CurateConfig) -> str | None:
    return None if cfg.state_compression in (None, "none") else cfg.state_compression


# An exchange task memory-maps its whole chunk of inputs at once: at most this many, far below
# the kernel's vm.max_map_count (65,530 by default) whatever the crawl's size.
MAX_INPUTS_PER_RUN = 1024


def exchange_runs(cfg: CurateConfig, n_inputs: int, default_parallelism: int) -> int:
    """How many exchange runs: fixed by the settings and the cluster (so the bucket phase opens
    runs x buckets files, linear in the data), at most one per input, and enough that no task
    maps more than MAX_INPUTS_PER_RUN inputs."""
    runs = cfg.exchange_tasks or 2 * default_parallelism
    return max(1, min(n_inputs, max(runs, math.ceil(n_inputs / MAX_INPUTS_PER_RUN))))


def sample_curated(spark, buckets: int, matched_dir: str, curated_dir: str, probs_by_lang: dict, seed: int,
                   picked_dir: str | None = None, mode: str | None = None) -> dict:
    """Phase 3 on Spark: curated/ files (epoch 0); returns the summed task results."""
    storage.makedirs(curated_dir)
    body = functools.partial(curate_partition, matched_dir=matched_dir, curated_dir=curated_dir, seed=seed, epoch=0,
                             picked_dir=picked_dir, env=task_env(curated_dir))
    return run_tasks(spark, buckets, body, grouping.merge_results, grouping.new_result, mode=mode,
                     progress=("curate 4/4 sample", "parts", "curated", _total("curated")),
                     broadcast={"probs_by_lang": probs_by_lang})


# When this process starts Spark itself (local mode): the driver JVM only schedules tasks and
# carries small results (texts stay in the Python workers), so C1-only JIT is plenty and saves
# the C2 compiler's CPU (about 1.5 CPU-s a run). Under spark-submit, spark-defaults decide.
LOCAL_SPARK_CONF = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1"}


def build_session(cfg: CurateConfig):
    """The curate job's SparkSession (`cfg.extra_spark_conf` wins over LOCAL_SPARK_CONF)."""
    return build_spark(APP_NAME, cfg.master, cfg.extra_spark_conf, local_conf=LOCAL_SPARK_CONF)


PREFLIGHT_CHECKS = 8  # inputs whose head (and Parquet footer) preflight reads, besides each format's first


def preflight_sample(paths: list[str], fmt: str) -> list[str]:
    """The inputs preflight checks: the first of each format and a few spread over the rest (a
    crawl has 90,000 inputs: reading every head would take the driver minutes)."""
    firsts = {}
    for p in paths:
        firsts.setdefault(input_format(p, fmt), p)
    step = max(1, len(paths) // PREFLIGHT_CHECKS)
    return sorted(set(firsts.values()) | set(paths[::step][:PREFLIGHT_CHECKS]))


class NothingToCurate(RuntimeError):
    """The inputs held no image-text pair at all: wrong format, columns or files."""


def dropped_inputs(output: str, inputs: list[str]) -> list[str]:
    """The inputs the earlier complete output at `output` covered that `inputs` leave out."""
    ledger_uri = CurateOutput.published(output).ledger
    if not (storage.is_complete(output) and storage.exists(ledger_uri)):
        return []
    covered = {e["path"] for e in runs.read_json(ledger_uri).get("inputs", {}).values()}
    return sorted(covered - set(inputs))


def preflight(cfg: CurateConfig) -> tuple[list[str], dict, list[str]]:
    """(input files, metadata manifest, inputs dropped from the earlier output), or a one-line
    ValueError/OSError: everything a run checks before Spark starts (settings, inputs, metadata,
    whether --output may be written and whether the run would silently drop inputs)."""
    cfg.validate_for_run()
    inputs = storage.expand(cfg.inputs)
    layout.check_output(cfg.output, layout.CurateOutput.LAYOUT, inputs)
    for path in preflight_sample(inputs, cfg.input_format):  # columns and content, by reading a few heads
        check_input(path, cfg.input_format, cfg.url_col, cfg.text_col)
    meta = read_metadata_manifest(cfg.metadata)
    if cfg.en_lang not in meta["languages"]:
        raise ValueError(f"metadata {cfg.metadata} has no {cfg.en_lang!r} entries: t_lang needs the reference language")
    dropped = dropped_inputs(cfg.output, inputs)
    if dropped and not cfg.drop_missing_inputs:
        raise ValueError(f"{len(dropped)} inputs of the earlier output {cfg.output} are not among this run's inputs "
                         f"(e.g. {dropped[0]}): give them again, or --drop-missing-inputs to publish without them")
    return inputs, meta, dropped


def run(cfg: CurateConfig, spark=None, progress=print, prepared: tuple[list[str], dict, list[str]] | None = None,
        show_progress: bool | None = None, locked: bool = False) -> dict:
    """Run the job; returns the manifest. Uses `spark` when given, else builds a session;
    `prepared` is what preflight(cfg) returned when the caller checked before starting Spark,
    `locked` says the caller holds the output lock (runs.output_lock) already."""
    t0 = time.time()
    inputs, meta, dropped = prepared if prepared is not None else preflight(cfg)
    code = runs.code_version(CODE_FILES)
    lid = lid_model_id(cfg.lid_model)
    decontam = build_decontam(cfg)
    fingerprint = stage1_fingerprint(cfg, meta["version"], lid, code, decontam and decontam["digest"])

    if spark is None:
        spark = build_session(cfg)
    mode = progress_mode(progress is print if show_progress is None else show_progress)
    lock = contextlib.nullcontext() if locked else runs.output_lock(output_uri(cfg), JOB)
    with lock:
        manifest = _run(cfg, spark, t0, inputs, meta, code, lid, fingerprint, progress, mode, dropped, decontam)
    print_summary(manifest, output_uri(cfg), progress)
    return manifest


def _run(cfg: CurateConfig, spark, t0: float, inputs: list[str], meta: dict, code: str, lid: dict,
         fingerprint: str, progress, mode: str | None = None, dropped: list[str] = (),
         decontam: dict | None = None) -> dict:
    timings: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.time()
        timings[name] = round(now - since, 3)
        return now

    output = output_uri(cfg)
    meta_version = meta["version"]
    languages = sorted(meta["languages"])
    num_entries = {lang: int(meta["languages"][lang]["entries"]) for lang in languages}
    ids = [input_id(p) for p in inputs]

    state_dir = storage.join(state_root(cfg), fingerprint)  # one settings fingerprint's state
    # local: a staging directory renamed into place; s3://: the run's own prefix, made current
    # by the manifest (readers resolve through it: CurateOutput.published)
    with storage.publish_versioned(output, CurateOutput.MANIFEST) as staging:
        storage.makedirs(staging)
        new = CurateOutput(staging)
        reused, new_inputs, ledger, keys = plan_inputs(inputs, state_dir, cfg.incremental)
        progress(f"curate: {len(inputs)} inputs ({len(reused)} with state from an earlier run, "
                 f"{len(new_inputs)} to read), metadata {meta_version}, {len(languages)} languages, t_en={cfg.t_en:,}")
        t = time.time()
        per_input = (process_inputs(spark, cfg, new_inputs, state_dir, keys, mode, meta.get("manifest_sha256"),
                                    decontam["bytes"] if decontam else None)
                     if new_inputs else {})
        new_inputs_ids = list(per_input)
        for iid in reused:
            per_input[iid] = grouping.read_input_stats(state_dir, keys[iid])
        missing = [iid for iid in ids if per_input.get(iid) is None]
        if missing:
            raise RuntimeError(f"{len(missing)} inputs have no stage-1 stats (e.g. {ledger[missing[0]]['path']})")
        t = mark("parse_lid_match", t)
        _check_hook(cfg, "stage1")
        pairs = sum(per_input[i]["accounting"].get("extract", {}).get("out", 0) for i in ids)
        if not pairs:
            raise NothingToCurate(f"the {len(ids)} inputs hold no image link with a text: check --input-format, "
                                  "--url-col/--text-col and the files")

        acct = accounting.StageAccounting()
        lid_langs: dict[str, int] = {}
        lid_corrections: dict[str, int] = {}  # the LID script check's relabellings ('ja>zh'), for audit
        for iid in sorted(per_input):
            s = per_input[iid]
            acct.merge(s["accounting"])
            for k, v in s["lid_langs"].items():
                lid_langs[k] = lid_langs.get(k, 0) + v
            for k, v in s.get("lid_corrections", {}).items():  # absent in states of older code
                lid_corrections[k] = lid_corrections.get(k, 0) + v
        matched_texts_in = sum(per_input[i]["texts"] for i in ids)
        reject_rows = sum(per_input[i]["reject_rows"] for i in ids)
        buckets = n_files(matched_texts_in, cfg.rows_per_file)
        state_keys = [keys[i] for i in ids]  # the state of each input, in input order
        chunks = reject_chunks(state_keys, {keys[i]: per_input[i]["reject_rows"] for i in ids},
                               n_files(reject_rows, cfg.rows_per_file))

        # 2. the exchange (inputs' texts by uuid bucket), then matched/ and rejects/ (one task per
        # uuid bucket), entry counts
        n_runs = exchange_runs(cfg, len(ids), spark.sparkContext.defaultParallelism)
        band_rows = sum(per_input[i].get("band_pairs", 0) for i in ids) if cfg.near_dup else 0
        band_buckets = n_files(band_rows, 4 * cfg.rows_per_file) if cfg.near_dup else 0
        exchanged = exchange(spark, state_dir, state_keys, buckets, n_runs, new.exchange, _compression(cfg), mode,
                             band_buckets)
        if exchanged["totals"].get("exchanged", 0) != matched_texts_in:
            raise RuntimeError(f"the exchange moved {exchanged['totals']} texts, stage 1 stored {matched_texts_in}")
        t = mark("exchange", t)
        # distinct counts: every input's stored sketches, merged by the exchange tasks (one per run)
        distinct = exchanged.get("distinct") or sketches.DistinctCounts()
        if not isinstance(distinct, sketches.DistinctCounts):  # one exchange run: its task's bytes
            distinct = sketches.DistinctCounts.from_bytes(distinct)
        storage.makedirs(storage.join(staging, CurateOutput.STATE))
        storage.write_bytes(new.distinct_counts, distinct.to_bytes())
        distinct_summary = distinct.summary()
        clusters = None
        if cfg.near_dup:
            found = cluster_near_dups(spark, n_runs, new.exchange, band_buckets, mode)
            if found["totals"].get("band_rows", 0) != band_rows:
                raise RuntimeError(f"the band exchange moved {found['totals']} rows, stage 1 stored {band_rows}")
            clusters = (found["nodes"], found["roots"])
            t = mark("near_dup_clusters", t)
        cap = capping = None
        if cfg.near_dup_cap:
            cap_buckets = n_files(matched_texts_in, 4 * cfg.rows_per_file)  # candidates <= matched texts
            capping = near_dup_cap(spark, n_runs, new.exchange, clusters, cfg.near_dup_cap, cfg.seed, cap_buckets,
                                   mode)
            capping["totals"]["cap_buckets"] = cap_buckets
            cap = capping["cap"]
            t = mark("near_dup_cap", t)
        matched_dir = new.matched
        picked_dir = new.picked  # scratch: removed before publishing
        grouped = group_and_count(spark, state_dir, n_runs, new.exchange, buckets, chunks, matched_dir, new.rejects,
                                  picked_dir, cfg.seed, mode, cfg.count_identical_texts, clusters, cap)
        storage.delete_prefix(new.exchange)
        totals = grouped["totals"]
        images = int(totals.get("images", 0))
        if totals.get("texts_in", 0) != matched_texts_in or totals.get("rejects", 0) != reject_rows:
            raise RuntimeError(f"grouping read other numbers of texts/rejects than stage 1 stored: {totals}")
        matched_by_lang = {lang: int(n) for lang, n in sorted(grouped["lang_texts"].items())}
        unique_texts = sum(matched_by_lang.values())
        capped = int(totals.get("near_dup_capped", 0))
        if cap is not None:  # texts of clusters over the cap, dropped before grouping (rejects/, near_dup_cap)
            acct.add(grouping.CAP_STAGE, matched_texts_in, matched_texts_in - capped, {grouping.CAP_REASON: capped})
        acct.add("group", matched_texts_in - capped, unique_texts,
                 {"duplicate_text": matched_texts_in - capped - unique_texts})
        t = mark("group_matched", t)
        _check_hook(cfg, "matched")

        # 3. counts -> thresholds -> entry probabilities -> curated
        counts = grouping.counts_table(grouped)
        write_table_files(counts, new.counts, n_files(counts.num_rows, cfg.rows_per_file))
        counts_by_lang, thresholds, probs_by_lang = grouping.balance_counts(
            counts, num_entries, cfg.t_en, cfg.en_lang, matched_by_lang)
        probs_dir = new.entry_probs
        storage.makedirs(probs_dir)
        for lang, probs in probs_by_lang.items():
            storage.save_npy(storage.join(probs_dir, f"{lang}.npy"), probs)
        runs.write_json(new.thresholds,
                        {"t_en": cfg.t_en, "en_lang": cfg.en_lang, "p": thresholds[cfg.en_lang]["p"],
                         "languages": thresholds})
        t = mark("counts_thresholds", t)

        sampled = sample_curated(spark, buckets, matched_dir, new.curated,
                                 {k: probs_by_lang[k] for k in matched_by_lang}, cfg.seed, picked_dir, mode)
        storage.delete_prefix(picked_dir)
        curated_rows = int(sampled["totals"].get("curated", 0))
        acct.add("sample", images, curated_rows, {"not_sampled": images - curated_rows})
        curated_counts = grouping.dense_counts(grouping.counts_table(sampled), num_entries)
        t = mark("curated", t)
        _check_hook(cfg, "outputs")

        unbalanced = acct.unbalanced()
        if unbalanced:
            raise RuntimeError(f"accounting does not balance for stages {unbalanced}: {acct.to_dict()}")
        rows = {"inputs": len(inputs), "images": images, "matched_texts": unique_texts, "curated": curated_rows,
                "counts": int(sum(int((c > 0).sum()) for c in counts_by_lang.values())),
                "rejects": reject_rows + capped}
        rep = report.build_report(
            accounting=acct.to_dict(), thresholds=thresholds, counts_by_lang=counts_by_lang,
            curated_counts_by_lang=curated_counts, matched_by_lang=matched_by_lang, lid_langs=lid_langs,
            lid_corrections=lid_corrections if cfg.lid_script_check else None,
            rows=rows, t_en=cfg.t_en, en_lang=cfg.en_lang, metadata_version=meta_version,
            curated_by_lang={lang: int(n) for lang, n in sampled["lang_texts"].items()},
            distinct=distinct_summary, decontam=decontam_report(decontam, acct, per_input, ids),
            near_dup=near_dup_report(cfg, clusters, grouped.get("clusters"), matched_by_lang, capping, capped))
        report.write_report(rep, staging)
        runs.write_json(new.ledger, {"fingerprint": fingerprint, "inputs": ledger})
        timings["total"] = round(time.time() - t0, 3)
        manifest = {
            "job": JOB,
            "config": cfg.to_dict(),
            "metadata": {"uri": cfg.metadata, "version": meta_version, "manifest_sha256": meta["manifest_sha256"]},
            "lid_model": lid,
            "code_version": code,
            "inputs": {"count": len(inputs), "reused": len(reused), "read": len(new_inputs), "paths": inputs,
                       "dropped": list(dropped)},
            "rows": rows,
            "languages_dropped_by_t0": sorted(k for k, v in thresholds.items() if v["drops_language"]),
            "accounting": acct.to_dict(),
            "timings_s": timings,
            # CPU of the Python task bodies (not worker start-up, not the JVM): where the work is
            "task_cpu_seconds": {
                "inputs": round(sum(per_input[i].get("cpu_seconds", 0.0) for i in new_inputs_ids), 3),
                "exchange": round(exchanged["totals"].get("cpu_seconds_exchange", 0.0), 3),
                "group": round(totals.get("cpu_seconds_group", 0.0), 3),
                "curate": round(sampled["totals"].get("cpu_seconds_curate", 0.0), 3),
                "near_dup_clusters": round(found["totals"].get("cpu_seconds_clusters", 0.0), 3) if cfg.near_dup
                else 0.0,
                "near_dup_cap": round(capping["totals"].get("cpu_seconds_cap", 0.0), 3) if capping else 0.0},
            "spark": {"version": spark.version, "master": spark.sparkContext.master,
                      "default_parallelism": spark.sparkContext.defaultParallelism},
            "stage1_fingerprint": fingerprint,
            # what rejects/ holds: a row per reject, except a deterministic sample of the bulk reasons
            # (and none for duplicate_text / not_sampled: matched/ minus curated/ are those images)
            "rejects": {"rows": reject_rows, "sampled_reasons": list(cfg.sampled_reasons),
                        "sample_every": cfg.reject_sample_every,
                        "sample_max_per_reason_per_input": cfg.reject_sample_max},
            # what the exchange cost: files opened (inputs once, then runs per bucket) and the most
            # memory maps one task held, against what opening every input per bucket would take
            "exchange": {"runs": n_runs, "buckets": buckets,
                         "opens": int(exchanged["totals"].get("opens_exchange", 0) + totals.get("opens_group", 0)),
                         "opens_inputs_x_buckets": len(ids) * buckets,
                         # an exchange task maps its chunk of inputs, a bucket task every run
                         "max_maps_per_task": max(math.ceil(len(ids) / n_runs), n_runs)},
            "en_max_count": int(counts_by_lang[cfg.en_lang].max(initial=0)),
            # HyperLogLog estimates over the matched texts (sketches in _state/distinct_counts.bin)
            "distinct": distinct_summary,
            # texts the LID script check relabelled, by 'model>used' label (null: the check was off)
            "lid_corrections": dict(sorted(lid_corrections.items())) if cfg.lid_script_check else None,
            "near_dup": None if clusters is None else
            {"threshold": cfg.near_dup_threshold, "band_buckets": band_buckets, "band_rows": band_rows,
             "clustered_texts": int(len(clusters[0])), "clusters": int(len(np.unique(clusters[1]))),
             "cap": cfg.near_dup_cap or None,
             **({"capped_texts": capped, "capped_clusters": int(capping["totals"].get("capped_clusters", 0)),
                 "cap_buckets": int(capping["totals"]["cap_buckets"])} if capping is not None else {})},
            "decontam": None if decontam is None else
            {**decontam["stats"], "files": decontam["files"],
             "dropped": acct.to_dict().get("decontam", {}).get("rejected", {})},
        }
        runs.write_json(new.manifest, manifest)  # last, before publish's _SUCCESS
    return manifest


def print_summary(manifest: dict, output: str, progress=print) -> None:
    """The short human summary: records per stage, where the outputs and the report are."""
    rows = manifest["rows"]
    acct = manifest["accounting"]
    read = acct.get("read", {})
    progress("")
    progress(f"curate done in {manifest['timings_s']['total']:.1f}s: {rows['inputs']} inputs, "
             f"{read.get('in', 0):,} records -> {rows['matched_texts']:,} matched texts on {rows['images']:,} images "
             f"-> {rows['curated']:,} curated (t_en={manifest['config']['t_en']:,})")
    for name, s in acct.items():
        rej = ", ".join(f"{k}={v:,}" for k, v in sorted(s["rejected"].items(), key=lambda kv: -kv[1])[:4])
        progress(f"  {name:<8} in {s['in']:>10,}  out {s['out']:>10,}  rejected {s['in'] - s['out']:>10,}"
                 + (f"  ({rej})" if rej else ""))
    en = manifest.get("en_max_count")
    if en is not None and en < manifest["config"]["t_en"]:
        progress(f"note: every English entry count (max {en:,}) is below t_en={manifest['config']['t_en']:,}, so p = 1 "
                 "and nothing is balanced; on a small input try a smaller --t-en")
    dropped = manifest.get("languages_dropped_by_t0")
    if dropped:
        progress(f"warning: t_lang = 0 drops every text of {', '.join(dropped)}: English's tail proportion p is "
                 "closer to 0 than to these languages' smallest count share (input too small for this t_en)")
    dropped = manifest["inputs"].get("dropped") or []
    if dropped:
        progress(f"note: {len(dropped)} inputs of the earlier output are not in this one (--drop-missing-inputs), "
                 f"e.g. {dropped[0]}; the manifest lists them")
    progress(f"outputs: {output}")
    where = CurateOutput.published(output)  # s3://: the current run's prefix (readers resolve to it)
    for name in CurateOutput.PUBLISHED:
        progress(f"  {name:<16} {where.path(name)}")
    progress(f"report:  {where.path(CurateOutput.REPORT_HTML)}")
    progress(f"         {where.path(CurateOutput.REPORT_JSON)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        prepared = preflight(cfg)
    except (ValueError, OSError) as e:
        return user_error("curate", e)
    try:
        with runs.output_lock(output_uri(cfg), JOB):  # a held lock is a user error, before Spark
            run(cfg, build_session(cfg), prepared=prepared, locked=True)
    except runs.LockHeld as e:
        return user_error("curate", e)
    except NothingToCurate as e:
        user_error("curate", e)
        return 1
    return 0


if __name__ == "__main__":
    from jobs import curate  # task bodies pickle by reference to this module, not to __main__

    sys.exit(curate.main())
