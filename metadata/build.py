"""The metadata build: inputs -> Spark counts -> per-language caps -> versioned metadata directory.

Stages (each a library function; `jobs/build_metadata.py` only parses flags and calls `build`):

1. discover inputs: Wikipedia dumps (`<code>wiki-*.xml[.bz2|.xz|.gz]`), WordNet 3.0 data files
   and OMW tab files, optional pageview files;
2. Spark: one task per file produces count records (counting.py, pageviews.py, wordnet.py),
   aggregated once and cached;
3. Spark: per language, top unigrams, PMI bigrams, titles (pageviews, else in-links);
4. driver, one language at a time (streamed, bounded memory): merge sources (merge.py),
   write `entries/<lang>.parquet` and `automata/<lang>.ac` through curation.metadata_dir;
5. `manifest.json` last (counts by source, pages read/skipped by reason, corrupt inputs,
   tokenizers, title ranking, config, checksums); the directory is published atomically.

The manifest holds no timings and no absolute paths; two builds from the same inputs give
byte-identical `entries/` files and the same version. `automata/*.ac` files are equal in
content but not in bytes (pyahocorasick's format embeds memory addresses), so the manifest
also records `automaton_content_sha256` per language, which is stable. Timings go to
`_REPORT.json`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from curation.languages import OTHER, is_no_space_lang
from curation.metadata_dir import write_language, write_manifest
from metadata.config import MetadataConfig
from metadata.merge import merge_language

log = logging.getLogger(__name__)

_DUMP_RE = re.compile(r"^[a-z][a-z0-9_\-]*?wiki[-_.].*\.xml(?:\.(?:bz2|xz|gz))?$")
_PAGEVIEWS_RE = re.compile(r"^(pageviews|pagecounts)-.*")
REPORT = "_REPORT.json"


@dataclass
class BuildInputs:
    wikipedia: list[str] = field(default_factory=list)
    wordnet: list[str] = field(default_factory=list)
    pageviews: list[str] = field(default_factory=list)


def _expand(specs: list[str], want) -> list[str]:
    from curation import storage

    out: set[str] = set()
    for spec in specs or []:
        spec = os.fspath(spec)
        if storage.is_s3(spec):  # a key, a prefix ("directory") or a glob
            if any(c in spec for c in "*?["):
                found = storage.glob_paths(spec)
            else:
                found = [u for u in storage.list_files(spec.rstrip("/") + "/") if want(u)]
                if not found and not spec.endswith("/") and storage.exists(spec):
                    found = [spec]
            if not found:
                raise FileNotFoundError(f"input not found: {spec}")
            out.update(found)
        elif os.path.isdir(spec):
            for dirpath, _dirs, files in os.walk(spec):
                out.update(os.path.join(dirpath, f) for f in files if want(os.path.join(dirpath, f)))
        elif any(c in spec for c in "*?["):
            out.update(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        elif os.path.exists(spec):
            out.add(spec)
        else:
            raise FileNotFoundError(f"input not found: {spec}")
    return sorted(out)


def discover_inputs(wikipedia: list[str], wordnet: list[str], pageviews: list[str] | None = None) -> BuildInputs:
    """Expand dirs/globs/files into the sorted input lists (directories are searched recursively)."""
    from metadata.wordnet import wordnet_kind

    return BuildInputs(
        wikipedia=_expand(wikipedia, lambda p: bool(_DUMP_RE.match(os.path.basename(p)))),
        wordnet=_expand(wordnet, lambda p: wordnet_kind(p) is not None),
        pageviews=_expand(pageviews or [], lambda p: bool(_PAGEVIEWS_RE.match(os.path.basename(p)))),
    )


def _dump_lang(path: str, align_to_lid: bool) -> str:
    from metadata.alignment import lang_for_wiki
    from metadata.dump_reader import dump_language

    try:
        return lang_for_wiki(dump_language(path), align_to_lid)
    except ValueError:
        return OTHER


def check_output(output: str, inputs: BuildInputs) -> None:
    """OutputRefused unless `output` may be replaced by a metadata build (curation.layout)."""
    from curation import layout

    layout.check_output(output, layout.MetadataOutput.LAYOUT, [*inputs.wikipedia, *inputs.wordnet, *inputs.pageviews])


def build(spark, inputs: BuildInputs, output: str, config: MetadataConfig | None = None,
          languages: list[str] | None = None, align_to_lid: bool = True, version: str | None = None,
          progress: bool = True) -> dict:
    """Build the metadata directory at `output` (local path or s3://); returns the run report."""
    from pyspark.sql import functions as F

    from curation import storage
    from metadata.counting import aggregate, spark_records, top_bigrams, top_titles, top_unigrams
    from metadata.pageviews import spark_pageviews
    from metadata.wordnet import spark_wordnet

    config = config or MetadataConfig()
    check_output(output, inputs)
    t0 = time.time()
    timings: dict[str, float] = {}
    wanted = set(languages) if languages else None
    dump_langs = {p: _dump_lang(p, align_to_lid) for p in inputs.wikipedia}
    dumps = [p for p in inputs.wikipedia if wanted is None or dump_langs[p] in wanted]
    excluded_dumps = sorted(os.path.basename(p) for p in inputs.wikipedia if p not in dumps)

    records = spark_records(spark, dumps, config, align_to_lid)
    pv_records, pv_views = spark_pageviews(spark, inputs.pageviews, align_to_lid, languages)
    wn_records = spark_wordnet(spark, inputs.wordnet, align_to_lid, languages)
    agg = aggregate(records.unionByName(pv_records).unionByName(wn_records)).persist()
    n_agg = agg.count()
    timings["count_s"] = round(time.time() - t0, 3)
    log.info("aggregated %d distinct records in %.1fs", n_agg, timings["count_s"])

    if pv_views is not None:
        pv_views = agg.where(F.col("kind") == "p").select("lang", F.col("a").alias("title"), F.col("n").alias("views"))
    langs_with_text = sorted(set(dump_langs[p] for p in dumps))
    joiners = {lang: ("" if is_no_space_lang(lang) else " ") for lang in langs_with_text}

    t1 = time.time()
    titles = top_titles(agg, pv_views, config)
    none = F.lit(None).cast("string")
    candidates = (
        agg.where(F.col("kind") == "w").select("lang", F.lit("wordnet").alias("source"), F.col("a").alias("entry"), none.alias("note"))
        .unionByName(top_unigrams(agg, config).select("lang", F.lit("wiki_unigram").alias("source"), "entry", none.alias("note")))
        .unionByName(top_bigrams(agg, config, joiners).select("lang", F.lit("wiki_bigram").alias("source"), "entry", none.alias("note")))
        .unionByName(titles.select("lang", F.lit("wiki_title").alias("source"), "entry", F.col("rank_by").alias("note")))
        .where(F.col("lang").isNotNull() & (F.col("lang") != ""))
    )
    rank_by: dict[str, str] = {}
    stats_rows = agg.where(F.col("kind") == "s").select("lang", "a", "b", "n").collect()
    counts = _collect_stats(stats_rows)

    def by_language():
        """(lang, {source: [entries]}) streamed one language at a time (in partition order)."""
        cur, bucket = None, defaultdict(list)
        # each language lands whole in one partition, contiguous after the sort (no global sort needed)
        parts = max(1, spark.sparkContext.defaultParallelism)
        grouped = candidates.repartition(parts, "lang").sortWithinPartitions("lang")
        for row in grouped.toLocalIterator(prefetchPartitions=True):
            if row["lang"] != cur:
                if cur is not None:
                    yield cur, bucket
                cur, bucket = row["lang"], defaultdict(list)
            bucket[row["source"]].append(row["entry"])
            if row["note"]:
                rank_by[cur] = row["note"]
        if cur is not None:
            yield cur, bucket

    s3_out = storage.is_s3(output)
    local_tmp = tempfile.mkdtemp(prefix="metadata-build-") if s3_out else None
    written: dict[str, dict] = {}
    try:
        with storage.publish(output) as staging:
            root = local_tmp if s3_out else staging
            os.makedirs(root, exist_ok=True)
            done = set()
            it = by_language()
            if progress:
                from tqdm import tqdm

                it = tqdm(it, desc="metadata languages", unit="lang", disable=None)
            for lang, sources in it:
                if lang in done:  # the grouping guarantees one group per language
                    raise RuntimeError(f"language {lang} came in two groups")
                written[lang] = _write_one(root, lang, sources, config, counts, rank_by.get(lang))
                done.add(lang)
            if OTHER not in done:  # curation always finds an `other` metadata (at least numbers)
                written[OTHER] = _write_one(root, OTHER, {}, config, counts, None)
            timings["select_write_s"] = round(time.time() - t1, 3)
            build_config = {
                "config": config.to_dict(),
                "align_to_lid": align_to_lid,
                "languages_filter": sorted(wanted) if wanted else None,
                "inputs": {
                    "wikipedia": sorted(os.path.basename(p) for p in dumps),
                    "wikipedia_excluded": excluded_dumps,
                    "wordnet": sorted(os.path.basename(p) for p in inputs.wordnet),
                    "pageviews": sorted(os.path.basename(p) for p in inputs.pageviews),
                },
                "counts": counts["totals"],
                "entry_id_order": "sources in config.sources order, then entries sorted by code point; first source wins",
                "titles_rank": "summed pageviews where pageview files cover the language, else in-link count in the dump",
            }
            version = version or _content_version(written, build_config)
            manifest = write_manifest(root, version, written, build_config)
            if s3_out:
                for dirpath, _dirs, files in os.walk(root):
                    for f in files:
                        rel = os.path.relpath(os.path.join(dirpath, f), root)
                        with open(os.path.join(dirpath, f), "rb") as fh:
                            storage.write_bytes(storage.join(staging, *rel.split(os.sep)), fh.read())
        timings["total_s"] = round(time.time() - t0, 3)
        report = _report(output, manifest, counts, timings, n_agg)
        storage.write_bytes(storage.join(output, REPORT),
                            (json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
        return report
    finally:
        agg.unpersist()
        if local_tmp:
            shutil.rmtree(local_tmp, ignore_errors=True)


def _write_one(root: str, lang: str, sources: dict, config: MetadataConfig, counts: dict, rank_by: str | None) -> dict:
    entries, srcs, merge_stats = merge_language(sources, config)
    info = write_language(root, lang, entries, srcs)
    lang_counts = counts["languages"].get(lang, {})
    info["merge"] = merge_stats
    info["wikipedia"] = lang_counts.get("wikipedia", {})
    info["wordnet"] = lang_counts.get("wordnet", {})
    info["tokenizer"] = lang_counts.get("tokenizer")
    info["titles_ranked_by"] = rank_by if "wiki_title" in merge_stats else None
    return info


def _collect_stats(rows) -> dict:
    """Per-language and total input counts from the 's' records (deterministic, sorted)."""
    langs: dict[str, dict] = defaultdict(lambda: {"wikipedia": Counter(), "wordnet": Counter(), "files": set()})
    totals = {"wikipedia": Counter(), "wordnet": Counter(), "pageviews": Counter()}
    per_file: dict[str, Counter] = defaultdict(Counter)
    tokenizers: dict[str, set] = defaultdict(set)
    for r in rows:
        lang, key, fname, n = r["lang"], r["a"], r["b"], int(r["n"])
        per_file[fname][key] += n
        if key.startswith("pageviews:"):
            totals["pageviews"][key.split(":", 1)[1]] += n
        elif key.startswith("wordnet:"):
            k = key.split(":", 1)[1]
            totals["wordnet"][k] += n
            for lg in filter(None, lang.split(",")):
                langs[lg]["wordnet"][k] += n
        elif key.startswith("tokenizer:"):
            tokenizers[lang].add(key.split(":", 1)[1])
        elif key.startswith("wiki:"):
            langs[lang]["files"].add(key.split(":", 1)[1])
        else:
            totals["wikipedia"][key] += n
            langs[lang]["wikipedia"][key] += n
    out_langs = {}
    for lang in sorted(langs):
        d = langs[lang]
        out_langs[lang] = {
            "wikipedia": dict(sorted(d["wikipedia"].items())),
            "wordnet": dict(sorted(d["wordnet"].items())),
            "wiki_codes": sorted(d["files"]),
            "tokenizer": ",".join(sorted(tokenizers.get(lang, ()))) or None,
        }
    return {
        "languages": out_langs,
        "totals": {k: dict(sorted(v.items())) for k, v in totals.items()},
        "files": {f: dict(sorted(c.items())) for f, c in sorted(per_file.items())},
    }


def _content_version(written: dict, build_config: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(build_config, sort_keys=True).encode())
    for lang in sorted(written):  # entries file + automaton content: stable across reruns
        h.update(written[lang]["sha256"][f"entries/{lang}.parquet"].encode())
        h.update(written[lang]["automaton_content_sha256"].encode())
    return f"wiki-wn-{h.hexdigest()[:16]}"


def _report(output: str, manifest: dict, counts: dict, timings: dict, n_agg: int) -> dict:
    langs = manifest["languages"]
    return {
        "output": output,
        "version": manifest["version"],
        "languages": len(langs),
        "entries": sum(v["entries"] for v in langs.values()),
        "entries_by_language": {k: v["entries"] for k, v in langs.items()},
        "inputs": counts["totals"],
        "files": counts["files"],
        "aggregated_records": n_agg,
        "timings": timings,
    }


def summary(report: dict) -> str:
    """A short human summary of a build report."""
    w = report["inputs"].get("wikipedia", {})
    skipped = {k: v for k, v in w.items() if k.startswith("skipped_") or k in (
        "invalid_utf8", "truncated_page", "page_too_large", "page_error", "deep_nesting")}
    errors = {k: v for k, v in w.items() if k.startswith(("corrupt_input", "truncated_input", "empty_input", "not_mediawiki", "unreadable"))}
    lines = [
        f"metadata {report['version']} -> {report['output']}",
        f"  languages: {report['languages']}, entries: {report['entries']}",
        f"  wikipedia: {w.get('inputs', 0)} dumps, {w.get('pages', 0)} pages read, "
        f"{w.get('articles', 0)} articles, skipped {skipped or '{}'}",
        f"  input errors: {errors or 'none'}",
        f"  wordnet: {report['inputs'].get('wordnet', {}).get('inputs', 0)} files; "
        f"pageviews: {report['inputs'].get('pageviews', {}).get('inputs', 0)} files",
        f"  time: {report['timings'].get('total_s')} s",
    ]
    return "\n".join(lines)
