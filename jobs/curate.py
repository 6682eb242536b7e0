#!/usr/bin/env python
"""The curate job: WAT / url+text tables in, balanced Parquet out (DESIGN sections 3 and 6).

    python jobs/curate.py --input 'build/sample/wat/*.wat.gz' --metadata build/sample/metadata --output out
    spark-submit jobs/curate.py --config infra/curate.json

Phases (Spark; the per-partition work is curation.pipeline):
  1. per input file: parse -> LID -> match (mapInArrow), stored per input under
     <output>/_state/texts/input_id=...; inputs already processed by the previous output with the
     same settings are reused from it (the ledger <output>/_state/ledger.json), so a rerun reads only
     new inputs;
  2. group texts per image (identical texts of an image once) -> matched/;
  3. counts/ -> thresholds.json -> entry_probs/<lang>.npy -> curated/ (offline sample, epoch 0);
  4. rejects/, report.json, report.html, _MANIFEST.json, then _SUCCESS: the whole directory is
     built in a staging directory and published by rename (curation.storage.publish).
Every output is sorted and split into a number of files that depends only on the data, so any
partitioning of the input gives the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import fcntl  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from curation import pipeline, report, storage  # noqa: E402
from curation.curate_config import CurateConfig, add_arguments, config_from_args  # noqa: E402
from curation.metadata_dir import MANIFEST as METADATA_MANIFEST  # noqa: E402
from curation.schemas import COUNTS  # noqa: E402

STATE = "_state"
LEDGER = "ledger.json"
JOB_MANIFEST = "_MANIFEST.json"
CURATED_DDL = "uuid string, url string, text string, lang string, entry_ids array<int>"
CODE_FILES = ("curation/pipeline.py", "curation/wat.py", "curation/urls.py", "curation/text.py",
              "curation/lid.py", "curation/languages.py", "curation/matcher.py", "curation/balance.py",
              "jobs/curate.py")


class InjectedFailure(RuntimeError):
    """Raised by the `fail_after` testing hook."""


# --- inputs ------------------------------------------------------------------------------------


def expand_inputs(specs) -> list[str]:
    """Sorted unique input files from paths, globs, directories and @list files (one entry a line)."""
    out: set[str] = set()
    for spec in specs:
        spec = os.fspath(spec)
        if spec.startswith("@"):
            with storage.open_read(spec[1:]) as f:
                lines = f.read().decode("utf-8").splitlines()
            out.update(expand_inputs([ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]))
        elif any(c in spec for c in "*?["):
            out.update(storage.glob_paths(spec))
        elif storage.is_s3(spec) or os.path.isdir(spec):
            out.update(p for p in storage.list_files(spec) if not os.path.basename(p).startswith(("_", ".")))
        else:
            if not storage.exists(spec):
                raise FileNotFoundError(f"input not found: {spec}")
            out.add(os.path.abspath(spec))
    return sorted(os.path.abspath(p) if not storage.is_s3(p) else p for p in out)


def input_id(path: str) -> str:
    """Stable id of an input (its state directory name); starts with a letter so Spark keeps it a string."""
    return "i" + hashlib.sha1(path.encode("utf-8")).hexdigest()[:20]


def input_stamp(path: str) -> dict:
    """What identifies the version of an input: size and mtime (local) or ETag (S3)."""
    if storage.is_s3(path):
        bucket, key = storage.split_s3(path)
        head = storage.s3_client().head_object(Bucket=bucket, Key=key)
        return {"size": int(head["ContentLength"]), "etag": head.get("ETag", "")}
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# --- versions / fingerprints ------------------------------------------------------------------


def code_version() -> str:
    """git describe when available, plus a hash of the code that decides the output."""
    h = hashlib.sha256()
    for rel in CODE_FILES:
        p = os.path.join(ROOT, rel)
        if os.path.exists(p):
            with open(p, "rb") as f:
                h.update(rel.encode() + b"\0" + f.read())
    git = ""
    with contextlib.suppress(Exception):
        git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    return f"{git or 'nogit'}+src.{h.hexdigest()[:12]}"


def read_metadata_manifest(uri: str) -> dict:
    with storage.open_read(storage.join(uri, METADATA_MANIFEST)) as f:
        return json.load(f)


def lid_model_id(path: str | None) -> dict:
    from curation.lid import default_model_path

    path = path or os.environ.get("WORLDCLIP_LID_MODEL") or default_model_path()
    st = os.stat(path)
    return {"path": path, "size": st.st_size}


def stage1_fingerprint(cfg: CurateConfig, metadata_version: str, lid: dict, code: str) -> str:
    doc = {"config": cfg.stage1_fingerprint(), "metadata_version": metadata_version, "lid": lid,
           "code": code.split("+src.")[-1]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# --- local output helpers ------------------------------------------------------------------------


def n_files(rows: int, rows_per_file: int) -> int:
    return max(1, math.ceil(rows / rows_per_file))


def tidy_spark_dir(path: str) -> list[str]:
    """Rename Spark's part-NNNNN-<uuid>...parquet to part-NNNNN.parquet; drop markers and checksums.

    Spark names files with a per-run uuid; fixed names make reruns byte-comparable and leave a
    single `_SUCCESS` (ours, at the top) that means "complete".
    """
    names = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name == "_SUCCESS" or name.endswith(".crc"):
            os.unlink(full)
        elif name.startswith("part-") and name.endswith(".parquet"):
            new = f"part-{name.split('-')[1]}.parquet"
            os.rename(full, os.path.join(path, new))
            names.append(new)
    return names


def write_sorted(df, path: str, files: int, sort_cols: list[str], key_cols: list[str] | None = None) -> None:
    """Hash-partition on `key_cols` into `files` files, sort each: placement is a function of the rows."""
    df.repartition(files, *(key_cols or sort_cols)).sortWithinPartitions(*sort_cols).write.mode(
        "overwrite").parquet(path)
    tidy_spark_dir(path)


def write_table_files(table: pa.Table, path: str, files: int) -> None:
    """A small sorted table (counts) written by the driver as `files` consecutive slices."""
    import pyarrow.parquet as pq

    os.makedirs(path, exist_ok=True)
    per = max(1, math.ceil(table.num_rows / files))
    for k in range(files):
        pq.write_table(table.slice(k * per, per), os.path.join(path, f"part-{k:05d}.parquet"))


def link_tree(src: str, dst: str) -> None:
    """Hard-link (copy across filesystems) a directory tree: reuse without rewriting the bytes."""
    def _link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=_link, dirs_exist_ok=True)


@contextlib.contextmanager
def output_lock(output: str):
    """One run per output at a time (cron overlaps); also makes stale staging dirs safe to remove."""
    parent, name = os.path.split(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another curate run holds the lock on {output}") from None
        dest = os.path.join(parent, name)
        olds = sorted(x for x in os.listdir(parent) if x.startswith(f".{name}.old-")
                      and os.path.exists(os.path.join(parent, x, storage.SUCCESS_MARKER)))
        if olds and not os.path.lexists(dest):  # killed between publish's two renames: put the old output back
            os.rename(os.path.join(parent, olds[-1]), dest)
        for stale in os.listdir(parent):  # left by killed runs: never complete, never read
            if stale.startswith((f".{name}.staging-", f".{name}.old-")):
                shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
        yield


def read_previous_ledger(output: str) -> dict | None:
    path = os.path.join(output, STATE, LEDGER)
    if not (storage.is_complete(output) and os.path.exists(path)):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def plan_inputs(inputs: list[str], previous: dict | None, fingerprint: str, incremental: bool):
    """(reused input ids, new inputs, ledger entries): reuse only unchanged inputs of the same fingerprint."""
    prev = {}
    if incremental and previous and previous.get("fingerprint") == fingerprint:
        prev = previous.get("inputs", {})
    reused, new, ledger = [], [], {}
    if any(storage.is_s3(p) for p in inputs):  # one HEAD request each: do them concurrently
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(32) as pool:
            stamps = list(pool.map(input_stamp, inputs))
    else:
        stamps = [input_stamp(p) for p in inputs]
    for path, stamp in zip(inputs, stamps, strict=True):
        iid = input_id(path)
        ledger[iid] = {"path": path, **stamp}
        if iid in prev and prev[iid] == ledger[iid]:
            reused.append(iid)
        else:
            new.append(path)
    return reused, new, ledger


# --- Spark -----------------------------------------------------------------------------------------


def build_spark(cfg: CurateConfig):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("worldclip-curate")
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # launched by spark-submit
    if not submitted:
        # python workers use this interpreter (the venv), not whatever `python3` is on PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = builder.config("spark.ui.showConsoleProgress", "false")
    if cfg.master:
        builder = builder.master(cfg.master)
    elif not submitted:
        builder = builder.master("local[*]")
    builder = builder.config("spark.python.worker.reuse", "true")
    for k, v in cfg.extra_spark_conf.items():
        builder = builder.config(k, str(v))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _stage1(spark, cfg: CurateConfig, new_inputs: list[str], texts_dir: str) -> None:
    rows = pa.table({
        "path": new_inputs,
        "input_id": [input_id(p) for p in new_inputs],
        "format": [pipeline.input_format(p, cfg.input_format) for p in new_inputs],
    }, schema=pipeline.INPUTS_SCHEMA)
    tasks = cfg.partitions or min(len(new_inputs), 10_000)
    body = functools.partial(
        pipeline.stage1_batches, metadata=cfg.metadata, lid_model=cfg.lid_model, url_col=cfg.url_col,
        text_col=cfg.text_col, batch_size=cfg.batch_size, min_lid_prob=cfg.min_lid_prob,
        count_only=tuple(cfg.count_only_reasons), max_loaded=cfg.max_loaded_automata, cache_dir=cfg.cache_dir)
    # Rows of a task come input by input: concurrent writers (one per input id) spare the sort
    # that partitionBy would otherwise add; past 64 ids in one task Spark falls back to sorting.
    with session_conf(spark, {"spark.sql.maxConcurrentOutputFileWriters": "64",
                              "spark.sql.optimizer.plannedWrite.enabled": "false"}):
        (spark.createDataFrame(rows).repartition(tasks).mapInArrow(body, pipeline.STAGE1_DDL)
         .write.mode("append").partitionBy("input_id").parquet(texts_dir))
    for root, _dirs, files in os.walk(texts_dir):
        for name in files:
            if name == "_SUCCESS" or name.endswith(".crc"):
                os.unlink(os.path.join(root, name))


def _check_hook(cfg: CurateConfig, phase: str) -> None:
    if cfg.fail_after == phase:
        raise InjectedFailure(f"fail_after={phase!r}: injected failure (testing hook)")


def run(cfg: CurateConfig, spark=None, progress=print) -> dict:
    """Run the job; returns the manifest. Uses `spark` when given, else builds a session."""
    cfg.validate_for_run()
    if storage.is_s3(cfg.output):
        raise ValueError("output must be a local or shared filesystem path (s3:// outputs are not supported yet)")
    t0 = time.time()
    inputs = expand_inputs(cfg.inputs)
    if not inputs:
        raise FileNotFoundError(f"no input files match {list(cfg.inputs)}")
    meta = read_metadata_manifest(cfg.metadata)
    if cfg.en_lang not in meta["languages"]:
        raise ValueError(f"metadata {cfg.metadata} has no {cfg.en_lang!r} entries: t_lang needs the reference language")
    code = code_version()
    lid = lid_model_id(cfg.lid_model)
    fingerprint = stage1_fingerprint(cfg, meta["version"], lid, code)

    if spark is None:
        spark = build_spark(cfg)
    conf = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.arrow_batch_rows)}
    if cfg.shuffle_partitions:
        conf["spark.sql.shuffle.partitions"] = str(cfg.shuffle_partitions)
    with session_conf(spark, conf):
        manifest = _run(cfg, spark, t0, inputs, meta, code, lid, fingerprint, progress)
    print_summary(manifest, os.path.abspath(cfg.output), progress)
    return manifest


@contextlib.contextmanager
def session_conf(spark, conf: dict):
    """Set runtime SQL conf for the run and put the previous values back (the session may be shared)."""
    saved = {k: spark.conf.get(k, None) for k in conf}
    for k, v in conf.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


def _run(cfg: CurateConfig, spark, t0: float, inputs: list[str], meta: dict, code: str, lid: dict,
         fingerprint: str, progress) -> dict:
    from pyspark.sql import functions as F

    timings: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.time()
        timings[name] = round(now - since, 3)
        return now

    output = os.path.abspath(cfg.output)
    meta_version = meta["version"]
    languages = sorted(meta["languages"])
    num_entries = {lang: int(meta["languages"][lang]["entries"]) for lang in languages}
    cores = spark.sparkContext.defaultParallelism

    with output_lock(output), storage.publish(output) as staging:
        os.makedirs(staging)
        texts_dir = os.path.join(staging, STATE, "texts")
        reused, new_inputs, ledger = plan_inputs(inputs, read_previous_ledger(output), fingerprint, cfg.incremental)
        for iid in reused:
            link_tree(os.path.join(output, STATE, "texts", f"input_id={iid}"),
                      os.path.join(texts_dir, f"input_id={iid}"))
        progress(f"curate: {len(inputs)} inputs ({len(reused)} reused from the previous output, "
                 f"{len(new_inputs)} to read), metadata {meta_version}, {len(languages)} languages, t_en={cfg.t_en:,}")
        t = time.time()
        if new_inputs:
            _stage1(spark, cfg, new_inputs, texts_dir)
        t = mark("parse_lid_match", t)
        _check_hook(cfg, "stage1")

        state = (spark.read.schema(pipeline.STAGE1_DDL).option("basePath", texts_dir)
                 .parquet(*[os.path.join(texts_dir, f"input_id={input_id(p)}") for p in inputs]))
        stats_rows = state.where(F.col("kind") == "stats").select("input_id", "detail").collect()
        per_input = {r["input_id"]: json.loads(r["detail"]) for r in stats_rows}
        missing = sorted(set(ledger) - set(per_input))
        if missing:
            raise RuntimeError(f"{len(missing)} inputs have no stage-1 stats (e.g. {ledger[missing[0]]['path']})")
        acct = pipeline.StageAccounting()
        lid_langs: dict[str, int] = {}
        for iid in sorted(per_input):
            s = per_input[iid]
            acct.merge(s["accounting"])
            for k, v in s["lid_langs"].items():
                lid_langs[k] = lid_langs.get(k, 0) + v
        matched_texts_in = acct.stages.get("match", {}).get("out", 0)
        files = n_files(matched_texts_in, cfg.rows_per_file)

        # 2. matched/: one row per image, texts sorted, identical texts once
        # One shuffle: hash-partitioned on uuid into the output files, both aggregations and the
        # sort then run inside those partitions (HashPartitioning(uuid) satisfies both groupings).
        texts = state.where(F.col("kind") == "text").repartition(files, "uuid")
        detail = F.struct("source", "page_url", "url", "lid", "lid_prob", "lang", "entry_ids")
        unique = texts.groupBy("uuid", "text").agg(F.min(detail).alias("m"))
        matched = unique.groupBy("uuid").agg(
            F.min("m.url").alias("url"),
            F.sort_array(F.collect_list(F.struct(
                F.col("text"), F.col("m.source").alias("source"), F.col("m.page_url").alias("page_url"),
                F.col("m.lid").alias("lid"), F.col("m.lid_prob").alias("lid_prob"), F.col("m.lang").alias("lang"),
                F.col("m.entry_ids").alias("entry_ids")))).alias("texts"))
        matched_dir = os.path.join(staging, "matched")
        write_sorted(matched, matched_dir, files, ["uuid"])
        t = mark("group_matched", t)
        _check_hook(cfg, "matched")

        # 3. counts -> thresholds -> entry probabilities -> curated
        m = spark.read.parquet(matched_dir)
        images = m.count()  # from the Parquet footers
        # one scan of matched/: entry counts and, under entry id -1, the texts per language
        flat = m.select(F.explode("texts").alias("t"))
        agg = (flat.select(F.col("t.lang").alias("lang"),
                           F.explode(F.concat(F.array(F.lit(-1)), F.col("t.entry_ids"))).alias("entry_id"))
               .groupBy("lang", "entry_id").agg(F.count(F.lit(1)).cast("long").alias("count"))).toArrow()
        is_text = pc.equal(agg.column("entry_id"), -1)
        per_lang = agg.filter(is_text).to_pylist()
        matched_by_lang = {r["lang"]: int(r["count"]) for r in sorted(per_lang, key=lambda r: r["lang"])}
        unique_texts = sum(matched_by_lang.values())
        acct.add("group", matched_texts_in, unique_texts, {"duplicate_text": matched_texts_in - unique_texts})
        counts = agg.filter(pc.invert(is_text)).sort_by([("lang", "ascending"), ("entry_id", "ascending")])
        counts = pa.table([counts.column("lang"), counts.column("entry_id").cast(pa.int32()), counts.column("count")],
                          schema=COUNTS)
        write_table_files(counts, os.path.join(staging, "counts"), n_files(counts.num_rows, cfg.rows_per_file))
        counts_by_lang, thresholds, probs_by_lang = pipeline.balance_counts(
            counts, num_entries, cfg.t_en, cfg.en_lang, matched_by_lang)
        probs_dir = os.path.join(staging, "entry_probs")
        os.makedirs(probs_dir)
        for lang, probs in probs_by_lang.items():
            np.save(os.path.join(probs_dir, f"{lang}.npy"), probs, allow_pickle=False)
        write_json(os.path.join(staging, "thresholds.json"),
                   {"t_en": cfg.t_en, "en_lang": cfg.en_lang, "p": thresholds[cfg.en_lang]["p"],
                    "languages": thresholds})
        t = mark("counts_thresholds", t)

        bc = spark.sparkContext.broadcast({k: probs_by_lang[k] for k in matched_by_lang})
        body = functools.partial(pipeline.curate_batches, probs_by_lang=bc, seed=cfg.seed, epoch=0)
        curated_dir = os.path.join(staging, "curated")
        write_sorted(m.select("uuid", "url", "texts").mapInArrow(body, CURATED_DDL), curated_dir, files, ["uuid"])
        cur = spark.read.parquet(curated_dir)
        curated_rows = cur.count()
        acct.add("sample", images, curated_rows, {"not_sampled": images - curated_rows})
        curated_counts = pipeline.dense_counts(
            cur.select("lang", F.explode("entry_ids").alias("entry_id")).groupBy("lang", "entry_id")
            .agg(F.count(F.lit(1)).cast("long").alias("count")).toArrow(), num_entries)
        bc.unpersist()
        t = mark("curated", t)

        rejects = state.where(F.col("kind") == "reject").select("stage", "reason", "source", "detail")
        reject_rows = sum(n for name in ("read", "extract") for r, n in acct.stages.get(name, {}).get(
            "rejected", {}).items() if r not in cfg.count_only_reasons)
        write_sorted(rejects, os.path.join(staging, "rejects"), n_files(reject_rows, cfg.rows_per_file),
                     ["stage", "reason", "source", "detail"])
        t = mark("rejects", t)
        _check_hook(cfg, "outputs")

        unbalanced = acct.unbalanced()
        if unbalanced:
            raise RuntimeError(f"accounting does not balance for stages {unbalanced}: {acct.to_dict()}")
        rows = {"inputs": len(inputs), "images": images, "matched_texts": unique_texts, "curated": curated_rows,
                "counts": int(sum(int((c > 0).sum()) for c in counts_by_lang.values())), "rejects": reject_rows}
        rep = report.build_report(
            accounting=acct.to_dict(), thresholds=thresholds, counts_by_lang=counts_by_lang,
            curated_counts_by_lang=curated_counts, matched_by_lang=matched_by_lang, lid_langs=lid_langs,
            rows=rows, t_en=cfg.t_en, en_lang=cfg.en_lang, metadata_version=meta_version)
        report.write_report(rep, staging)
        write_json(os.path.join(staging, STATE, LEDGER), {"fingerprint": fingerprint, "inputs": ledger})
        timings["total"] = round(time.time() - t0, 3)
        manifest = {
            "job": "curate",
            "config": cfg.to_dict(),
            "metadata": {"uri": cfg.metadata, "version": meta_version},
            "lid_model": lid,
            "code_version": code,
            "inputs": {"count": len(inputs), "reused": len(reused), "read": len(new_inputs), "paths": inputs},
            "rows": rows,
            "accounting": acct.to_dict(),
            "timings_s": timings,
            "spark": {"version": spark.version, "master": spark.sparkContext.master, "default_parallelism": cores},
            "stage1_fingerprint": fingerprint,
            "en_max_count": int(counts_by_lang[cfg.en_lang].max(initial=0)),
        }
        write_json(os.path.join(staging, JOB_MANIFEST), manifest)  # last, before publish's _SUCCESS
    return manifest


def write_json(path: str, doc: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def print_summary(manifest: dict, output: str, progress=print) -> None:
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
    progress(f"outputs: {output}")
    for name in ("matched", "curated", "counts", "entry_probs", "thresholds.json", "rejects"):
        progress(f"  {name:<16} {os.path.join(output, name)}")
    progress(f"report:  {os.path.join(output, 'report.html')}")
    progress(f"         {os.path.join(output, 'report.json')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        cfg.validate_for_run()
    except (ValueError, OSError) as e:
        parser.error(str(e))
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
