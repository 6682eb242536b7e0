#!/usr/bin/env python
"""The rebalance job: a curate output's counts, t_lang, entry probabilities and offline sample
recomputed over the images that were obtained (issue 14 item 6; the reference counts only its
valid-uuid list), without rerunning LID or matching.

    python jobs/rebalance.py --curated-output out --downloaded out/images-all --output out-rebalanced
    python jobs/rebalance.py --curated-output out --uuids valid_uuids.txt --output out-rebalanced
    spark-submit jobs/rebalance.py --curated-output s3://b/run --downloaded s3://b/run-images --output s3://b/run-rb

Phases (task bodies in curation.rebalance; the output's layout is curation.layout.RebalanceOutput):
  1. per run of uuid pieces (image shards' uuid column, Parquet `uuid` columns, text lines): the
     valid uuids sorted and unique, split by the source's uuid buckets (one IPC batch per bucket);
  2. per matched/ part (= uuid bucket): the part filtered to its bucket's valid uuids -> entry
     counts, texts and images kept/dropped per language, each kept image's pick for the sample;
  3. counts/ -> thresholds.json -> entry_probs/<lang>.npy (the source's t_en, en_lang) -> curated/
     (the source's seed, epoch 0, grouping.curate_part);
  4. report.json, report.html, _MANIFEST.json (naming the source run, whose matched/ is not
     copied), then _SUCCESS: published like the curate job's output (storage.publish_versioned).
A task holds one bucket's valid uuids and one matched/ part, or one run's pieces: never the whole set.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from curation import accounting, grouping, layout, report, runs, storage  # noqa: E402
from curation import rebalance as rb  # noqa: E402
from curation.layout import CurateOutput, RebalanceOutput  # noqa: E402
from jobs.common import broadcast_value as _value  # noqa: E402
from jobs.common import build_spark, progress_mode, run_tasks, task_env, user_error  # noqa: E402
from jobs.common import result_total as _total  # noqa: E402
from jobs.curate import n_files, write_table_files  # noqa: E402

JOB = "rebalance"
APP_NAME = "worldclip-rebalance"
CODE_FILES = ("curation/rebalance.py", "jobs/rebalance.py", "curation/grouping.py", "curation/balance.py",
              "curation/sampling.py", "curation/schemas.py")


class NothingToRebalance(RuntimeError):
    """None of the valid uuids is a matched image of the source run."""


@dataclass
class Plan:
    """What preflight found: the source, the valid uuids and where to write."""

    source: rb.Source
    valid: rb.ValidUuids
    output: str
    master: str | None = None


def _uri(path: str) -> str:
    return path if storage.is_s3(path) else os.path.abspath(path)


def preflight(curated_output: str, output: str, downloaded: str | None = None, uuids: str | None = None,
              master: str | None = None) -> Plan:
    """The plan, or a one-line ValueError/OSError: everything checked before Spark starts."""
    if bool(downloaded) == bool(uuids):
        raise ValueError("give exactly one of --downloaded DIR (a download output) and --uuids FILE (a uuid list)")
    source_uri, out = _uri(curated_output), _uri(output)
    valid_spec = _uri(downloaded or uuids)
    for what, path in (("--curated-output", source_uri), ("--downloaded" if downloaded else "--uuids", valid_spec)):
        if layout._inside(out, path) or layout._inside(path, out):
            raise layout.OutputRefused(f"--output {out} and {what} {path} overlap: the rebalanced output is a new "
                                       "directory beside them")
    source = rb.read_source(source_uri)
    layout.check_output(out, RebalanceOutput.LAYOUT, [source_uri, valid_spec])
    valid = rb.downloaded_uuids(valid_spec) if downloaded else rb.listed_uuids(valid_spec)
    return Plan(source, valid, out, master)


# --- task bodies -----------------------------------------------------------------------------------




def uuid_run_path(exchange_dir: str, m: int) -> str:
    return storage.join(exchange_dir, f"uuids-{m:05d}.arrow")


def exchange_partition(task_ids: Iterable[int], *, chunks, buckets: int, exchange_dir: str,
                       env: dict | None = None) -> Iterator[dict]:
    """RDD partition body over task ids: task m writes the uuid run of piece chunk m."""
    chunks = _value(chunks)
    os.environ.update(env or {})
    for m in task_ids:
        yield rb.exchange_uuids(chunks[m], buckets, uuid_run_path(exchange_dir, m))


def bucket_partition(task_ids: Iterable[int], *, parts, runs: int, exchange_dir: str, picked_dir: str, seed: int,
                     env: dict | None = None) -> Iterator[dict]:
    """RDD partition body over task ids: task k filters matched/part-k to bucket k's valid uuids."""
    parts = _value(parts)
    os.environ.update(env or {})
    files = [uuid_run_path(exchange_dir, m) for m in range(runs)]
    for k in task_ids:
        yield rb.rebalance_bucket(k, parts[k], files, picked_dir, seed)


def curate_partition(task_ids: Iterable[int], *, matched_dir: str, curated_dir: str, picked_dir: str,
                     probs_by_lang, seed: int, env: dict | None = None) -> Iterator[dict]:
    """RDD partition body over task ids: curated/part-k from the picks (grouping.curate_part, epoch 0)."""
    probs = _value(probs_by_lang)
    os.environ.update(env or {})
    for k in task_ids:
        yield grouping.curate_part(k, matched_dir, curated_dir, probs, seed, 0, picked_dir)




# --- the run -----------------------------------------------------------------------------------------


def run(plan: Plan, spark=None, progress=print, show_progress: bool | None = None, locked: bool = False) -> dict:
    """Rebalance; returns the manifest. `locked`: the caller holds the output lock already."""
    import contextlib

    if spark is None:
        spark = build_spark(APP_NAME, plan.master)
    mode = progress_mode(progress is print if show_progress is None else show_progress)
    with contextlib.nullcontext() if locked else runs.output_lock(plan.output, JOB):
        manifest = _run(plan, spark, progress, mode)
    print_summary(manifest, plan.output, progress)
    return manifest


def _run(plan: Plan, spark, progress, mode) -> dict:
    t0 = time.time()
    timings: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.time()
        timings[name] = round(now - since, 3)
        return now

    src, valid = plan.source, plan.valid
    buckets = src.buckets
    code = runs.code_version(CODE_FILES)
    sc = spark.sparkContext
    progress(f"rebalance: {src.uri} ({buckets} matched parts, t_en={src.t_en:,}, seed={src.seed}) over "
             f"{len(valid.files)} {valid.kind} files ({len(valid.pieces)} pieces)")
    with storage.publish_versioned(plan.output, RebalanceOutput.MANIFEST) as staging:
        storage.makedirs(staging)
        new = RebalanceOutput(staging)
        t = time.time()
        # 1. the valid uuids by bucket
        n_runs = rb.exchange_run_count(len(valid.pieces), sc.defaultParallelism)
        storage.makedirs(new.exchange)
        body = functools.partial(exchange_partition, buckets=buckets, exchange_dir=new.exchange,
                                 env=task_env(new.exchange, *valid.files))
        exchanged = run_tasks(spark, n_runs, body, grouping.merge_results, grouping.new_result, mode=mode,
                              progress=("rebalance 1/3 valid uuids", "runs", "uuids", _total("uuids_read")),
                              broadcast={"chunks": rb.run_chunks(valid.pieces, n_runs)})
        t = mark("valid_uuids", t)
        # 2. per matched part: filter, count, pick
        storage.makedirs(new.picked)
        body = functools.partial(bucket_partition, runs=n_runs, exchange_dir=new.exchange, picked_dir=new.picked,
                                 seed=src.seed, env=task_env(new.exchange, src.root))
        grouped = run_tasks(spark, buckets, body, grouping.merge_results, grouping.new_result, mode=mode,
                            progress=("rebalance 2/3 filter matched", "parts", "images", _total("images")),
                            broadcast={"parts": list(src.matched_parts)})
        storage.delete_prefix(new.exchange)
        totals = grouped["totals"]
        images_in, images = int(totals.get("images_in", 0)), int(totals.get("images", 0))
        src_images = (src.manifest.get("rows") or {}).get("images")
        if src_images is not None and int(src_images) != images_in:
            raise RuntimeError(f"matched/ of {src.uri} holds {images_in} images, its manifest says {src_images}")
        if images == 0:
            raise NothingToRebalance(
                f"none of the {int(totals.get('valid_uuids', 0)):,} valid uuids is a matched image of {src.uri}: "
                "are they from another curate run?")
        t = mark("filter_matched", t)

        # 3. counts -> thresholds -> entry probabilities -> curated
        matched_by_lang = {lang: int(n) for lang, n in sorted(grouped["lang_texts"].items())}
        counts = grouping.counts_table(grouped)
        write_table_files(counts, new.counts, n_files(counts.num_rows, src.rows_per_file))
        counts_by_lang, thresholds, probs_by_lang = grouping.balance_counts(
            counts, src.num_entries, src.t_en, src.en_lang, matched_by_lang)
        storage.makedirs(new.entry_probs)
        for lang, probs in probs_by_lang.items():
            storage.save_npy(storage.join(new.entry_probs, f"{lang}.npy"), probs)
        runs.write_json(new.thresholds, {"t_en": src.t_en, "en_lang": src.en_lang,
                                         "p": thresholds[src.en_lang]["p"], "languages": thresholds})
        t = mark("counts_thresholds", t)
        storage.makedirs(new.curated)
        body = functools.partial(curate_partition, matched_dir=CurateOutput(src.root).matched,
                                 curated_dir=new.curated, picked_dir=new.picked, seed=src.seed,
                                 env=task_env(new.curated))
        sampled = run_tasks(spark, buckets, body, grouping.merge_results, grouping.new_result, mode=mode,
                            progress=("rebalance 3/3 sample", "parts", "curated", _total("curated")),
                            broadcast={"probs_by_lang": {k: probs_by_lang[k] for k in matched_by_lang}})
        storage.delete_prefix(new.picked)
        curated_rows = int(sampled["totals"].get("curated", 0))
        curated_counts = grouping.dense_counts(grouping.counts_table(sampled), src.num_entries)
        t = mark("curated", t)

        acct = accounting.StageAccounting()
        acct.add("obtained", images_in, images, {"not_obtained": images_in - images})
        acct.add("sample", images, curated_rows, {"not_sampled": images - curated_rows})
        unbalanced = acct.unbalanced()
        if unbalanced:
            raise RuntimeError(f"accounting does not balance for stages {unbalanced}: {acct.to_dict()}")
        unique_texts = sum(matched_by_lang.values())
        rows = {"inputs": int((src.manifest.get("rows") or {}).get("inputs", 0)), "images_source": images_in, "images": images, "images_dropped": images_in - images,
                "matched_texts": unique_texts, "curated": curated_rows,
                "counts": int(sum(int((c > 0).sum()) for c in counts_by_lang.values()))}
        meta = src.manifest.get("metadata") or {}
        rep = report.build_report(
            accounting=acct.to_dict(), thresholds=thresholds, counts_by_lang=counts_by_lang,
            curated_counts_by_lang=curated_counts, matched_by_lang=matched_by_lang,
            lid_langs=_source_lid_langs(src), rows=rows, t_en=src.t_en, en_lang=src.en_lang,
            metadata_version=meta.get("version", ""),
            curated_by_lang={lang: int(n) for lang, n in sampled["lang_texts"].items()})
        report.write_report(rep, staging)
        timings["total"] = round(time.time() - t0, 3)
        valid_uuids = int(totals.get("valid_uuids", 0))
        manifest = {
            "job": JOB,
            # the source's settings that decide the output (the curate config's field names)
            "config": {"t_en": src.t_en, "en_lang": src.en_lang, "seed": src.seed,
                       "count_identical_texts": src.count_identical_texts, "rows_per_file": src.rows_per_file},
            "metadata": meta,
            "source": src.identity(),  # matched/ is the source run's: not copied
            "valid": {**valid.describe(), "uuids_read": int(exchanged["totals"].get("uuids_read", 0)),
                      "distinct": valid_uuids, "matched": images,
                      "not_matched": int(totals.get("valid_not_matched", 0))},
            "rows": rows,
            "by_lang": rb.by_language(totals),
            "languages_dropped_by_t0": sorted(k for k, v in thresholds.items() if v["drops_language"]),
            "accounting": acct.to_dict(),
            "en_max_count": int(counts_by_lang[src.en_lang].max(initial=0)),
            "code_version": code,
            "timings_s": timings,
            "exchange": {"runs": n_runs, "buckets": buckets,
                         "opens": int(exchanged["totals"].get("opens_uuids", 0) + totals.get("opens_bucket", 0))},
            "spark": {"version": spark.version, "master": sc.master, "default_parallelism": sc.defaultParallelism},
        }
        runs.write_json(new.manifest, manifest)  # last, before publish's _SUCCESS
    return manifest


def _source_lid_langs(src: rb.Source) -> dict[str, int]:
    """Texts per LID language of the source run (its report): what LID saw does not depend on downloads."""
    try:
        rep = runs.read_json(storage.join(src.root, CurateOutput.REPORT_JSON))
        return {x["lang"]: int(x.get("lid_texts", 0)) for x in rep.get("languages", [])}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}


def print_summary(manifest: dict, output: str, progress=print) -> None:
    rows, valid = manifest["rows"], manifest["valid"]
    progress("")
    progress(f"rebalance done in {manifest['timings_s']['total']:.1f}s: {valid['distinct']:,} valid uuids "
             f"({valid['not_matched']:,} not matched images of the source) -> {rows['images']:,} of "
             f"{rows['images_source']:,} matched images kept ({rows['images_dropped']:,} not obtained), "
             f"{rows['matched_texts']:,} texts -> {rows['curated']:,} curated (t_en={manifest['config']['t_en']:,})")
    dropped = manifest.get("languages_dropped_by_t0")
    if dropped:
        progress(f"warning: t_lang = 0 drops every text of {', '.join(dropped)} (too few images for this t_en)")
    where = RebalanceOutput.published(output)
    for name in RebalanceOutput.PUBLISHED:
        progress(f"  {name:<16} {where.path(name)}")
    progress(f"  matched (source) {manifest['source']['matched']}")
    progress(f"report:  {where.path(CurateOutput.REPORT_HTML)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--curated-output", required=True, metavar="DIR",
                   help="a finished curate output (local or s3://) whose matched/ is rebalanced")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--downloaded", metavar="DIR", help="a finished download output: its image shards' uuids")
    which.add_argument("--uuids", metavar="FILE", help="valid uuids: a text file (one a line), Parquet with a "
                                                       "`uuid` column, or a directory / glob / @FILE of them")
    p.add_argument("--output", required=True, metavar="DIR", help="the rebalanced output (a new directory, or an "
                                                                  "earlier rebalance output to replace)")
    p.add_argument("--master", default=None, help="Spark master (none: spark-submit's, else local[*])")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = preflight(args.curated_output, args.output, args.downloaded, args.uuids, args.master)
    except (ValueError, OSError) as e:
        return user_error(JOB, e)
    try:
        with runs.output_lock(plan.output, JOB):
            run(plan, locked=True)
    except runs.LockHeld as e:
        return user_error(JOB, e)
    except NothingToRebalance as e:
        user_error(JOB, e)
        return 1
    return 0


if __name__ == "__main__":
    from jobs import rebalance  # task bodies pickle by reference to this module, not to __main__

    sys.exit(rebalance.main())
