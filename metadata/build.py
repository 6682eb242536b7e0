"""The metadata build's library half: its inputs, the per-language write and the manifest.

The build (jobs/build_metadata.py owns its Spark stages):

1. discover inputs (`discover_inputs`): Wikipedia dumps (`<code>wiki-*.xml[.bz2|.xz|.gz]`),
   WordNet 3.0 data files and OMW tab files, optional pageview files, imported metadata.json
   files per language (imported.py); `select_dumps` keeps the dumps of the wanted languages
   (not those of a language an import replaces);
2. job: one task per file produces count records (counting.py, pageviews.py, wordnet.py),
   summed once per (kind, unit, a, b), a unit being one Wikipedia code (alignment.py);
3. job: per unit, its plan (selection.plan_unit: rules, caps, how many candidates to send),
   then ranked unigrams, PMI bigrams, titles (the rules of selection.py);
4. `publish`, one language at a time (streamed, bounded memory): caps per unit and the union
   of the language's units (merge.py), write `entries/<lang>.parquet` and `automata/<lang>.ac`
   through curation.metadata_dir; `manifest.json` last (entries by source before and after the
   caps, per unit too, pages read/skipped by reason, corrupt inputs, tokenizers, title ranking,
   `build_config`, checksums); the directory is published atomically;
5. `write_report`: `_REPORT.json` beside it, with the timings and per language the entries by
   source before and after the caps.

Everything here runs on plain Python values (the stats come in as rows of (lang, a, b, n)), so
the write side is tested without Spark and the job only feeds it. The manifest holds no timings
and no absolute paths; two builds from the same inputs give byte-identical `entries/` files and
the same version. `automata/*.ac` files are equal in content but not in bytes (pyahocorasick's
format embeds memory addresses), so the manifest also records `automaton_content_sha256` per
language, which is stable.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from curation.languages import OTHER
from curation.layout import MetadataOutput
from curation.layout import check_output as layout_check
from curation.metadata_dir import write_language, write_manifest
from metadata.config import MetadataConfig
from metadata.merge import LanguageCandidates, merge_language

log = logging.getLogger(__name__)

_DUMP_RE = re.compile(r"^[a-z][a-z0-9_\-]*?wiki[-_.].*\.xml(?:\.(?:bz2|xz|gz))?$")
_PAGEVIEWS_RE = re.compile(r"^(pageviews|pagecounts)-.*")
REPORT = MetadataOutput.REPORT


@dataclass
class BuildInputs:
    wikipedia: list[str] = field(default_factory=list)
    wordnet: list[str] = field(default_factory=list)
    pageviews: list[str] = field(default_factory=list)
    imported: dict[str, str] = field(default_factory=dict)  # metadata language -> MetaCLIP-style metadata.json

    def paths(self) -> list[str]:
        return [*self.wikipedia, *self.wordnet, *self.pageviews, *self.imported.values()]


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


def discover_inputs(wikipedia: list[str], wordnet: list[str], pageviews: list[str] | None = None,
                    imported: dict[str, str] | None = None) -> BuildInputs:
    """Expand dirs/globs/files into the sorted input lists (directories are searched recursively);
    `imported` ({lang: file}) must name existing files."""
    from curation import storage
    from metadata.wordnet import wordnet_kind

    for lang, path in (imported or {}).items():
        if not (storage.exists(path) if storage.is_s3(path) else os.path.isfile(path)):
            raise FileNotFoundError(f"imported metadata for {lang} not found: {path}")
    return BuildInputs(
        wikipedia=_expand(wikipedia, lambda p: bool(_DUMP_RE.match(os.path.basename(p)))),
        wordnet=_expand(wordnet, lambda p: wordnet_kind(p) is not None),
        pageviews=_expand(pageviews or [], lambda p: bool(_PAGEVIEWS_RE.match(os.path.basename(p)))),
        imported=dict(sorted((imported or {}).items())),
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
    layout_check(output, MetadataOutput.LAYOUT, inputs.paths())


def select_dumps(paths: list[str], languages: list[str] | None = None, align_to_lid: bool = True,
                 skip: Iterable[str] = ()) -> tuple[dict[str, str], list[str]]:
    """({dump path: metadata language} of the dumps to read, sorted names of the excluded ones).

    A dump is read when its language is one of `languages` (all when None) and not in `skip`
    (the languages an imported list replaces: their dumps would be read for nothing).
    """
    wanted = set(languages) if languages else None
    skip = set(skip)
    langs = {p: _dump_lang(p, align_to_lid) for p in paths}
    dumps = {p: lang for p, lang in langs.items() if (wanted is None or lang in wanted) and lang not in skip}
    return dumps, sorted(os.path.basename(p) for p in paths if p not in dumps)


def build_config(config: MetadataConfig, inputs: BuildInputs, dumps: list[str], excluded_dumps: list[str],
                 counts: dict, align_to_lid: bool = True, languages: list[str] | None = None) -> dict:
    """The manifest's `build_config`: what decided the entries (no timings, no absolute paths)."""
    return {
        "config": config.to_dict(),
        "align_to_lid": align_to_lid,
        "languages_filter": sorted(set(languages)) if languages else None,
        "inputs": {
            "wikipedia": sorted(os.path.basename(p) for p in dumps),
            "wikipedia_excluded": excluded_dumps,
            "wordnet": sorted(os.path.basename(p) for p in inputs.wordnet),
            "pageviews": sorted(os.path.basename(p) for p in inputs.pageviews),
            "imported": {lang: os.path.basename(p) for lang, p in sorted(inputs.imported.items())},
        },
        "counts": counts["totals"],
        "entry_id_order": "sources in config.sources order, then entries sorted by code point; first source wins",
        "caps": "per Wikipedia code, counting only entries new after the earlier sources, rounded down; "
                "the codes of a language are unioned after",
        "titles_rank": "summed pageviews where pageview files cover the Wikipedia code, else in-link count in the dump",
    }


def publish(output: str, languages: Iterable[LanguageCandidates], config: MetadataConfig,
            counts: dict, build_config: dict, version: str | None = None, progress: bool = True) -> dict:
    """Write the metadata directory at `output` (local path or s3://); returns its manifest.

    `languages` yields each language's candidates (merge.LanguageCandidates: {unit: {source:
    candidates}}) once; they are merged and written one at a time, so memory holds one language. `other`
    is written even without candidates (curation always finds an `other` metadata, at least the
    numbers); manifest.json comes last and the directory is published atomically.
    """
    from curation import storage

    s3_out = storage.is_s3(output)
    local_tmp = tempfile.mkdtemp(prefix="metadata-build-") if s3_out else None
    written: dict[str, dict] = {}
    try:
        with storage.publish(output) as staging:
            root = local_tmp if s3_out else staging
            os.makedirs(root, exist_ok=True)
            bar = None
            if progress:
                from tqdm import tqdm

                # the total: the languages the inputs hold (counts), an upper bound made exact at the end
                expected = len(set(counts.get("languages", {})) | {OTHER}) or None
                if sys.stderr.isatty():
                    bar = tqdm(total=expected, desc="metadata languages", unit="lang")
                else:  # logs and cron: a plain line per language written
                    bar = _LogBar(expected)
            for group in languages:
                if group.lang in written:  # the caller guarantees one group per language
                    raise RuntimeError(f"language {group.lang} came in two groups")
                written[group.lang] = _write_one(root, group, config, counts)
                if bar is not None:
                    bar.update(1)
            if OTHER not in written:
                written[OTHER] = _write_one(root, LanguageCandidates(OTHER, {}), config, counts)
            if bar is not None:
                bar.total = len(written)
                bar.n = len(written)
                bar.close()
            manifest = write_manifest(root, version or _content_version(written, build_config), written, build_config)
            if s3_out:
                for dirpath, _dirs, files in os.walk(root):
                    for f in files:
                        rel = os.path.relpath(os.path.join(dirpath, f), root)
                        with open(os.path.join(dirpath, f), "rb") as fh:
                            storage.write_bytes(storage.join(staging, *rel.split(os.sep)), fh.read())
        return manifest
    finally:
        if local_tmp:
            shutil.rmtree(local_tmp, ignore_errors=True)


def write_report(output: str, manifest: dict, counts: dict, timings: dict, n_agg: int) -> dict:
    """Write `<output>/_REPORT.json` (the run's report, with its timings) beside the published directory."""
    from curation import storage

    report = _report(output, manifest, counts, timings, n_agg)
    storage.write_bytes(storage.join(output, REPORT),
                        (json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
    return report


class _LogBar:
    """tqdm's update/close for logs: "metadata: k/total languages written" lines."""

    def __init__(self, total: int | None):
        self.total, self.n = total, 0

    def update(self, k: int) -> None:
        self.n += k
        log.info("metadata: %d/%s languages written", self.n, self.total or "?")

    def close(self) -> None:
        log.info("metadata: %d languages written", self.n)


def _write_one(root: str, group: LanguageCandidates, config: MetadataConfig, counts: dict) -> dict:
    lang = group.lang
    merged = merge_language(group.units, config)
    info = write_language(root, lang, merged.entries, merged.sources, padding=config.entry_padding)
    lang_counts = counts["languages"].get(lang, {})
    info["merge"] = merged.by_source
    info["units"] = {
        unit: {"sources": merged.by_unit[unit], "rules": group.rules.get(unit),
               "titles_ranked_by": group.rank_by.get(unit) if "wiki_title" in merged.by_unit[unit] else None}
        for unit in sorted(merged.by_unit)
    }
    info["wikipedia"] = lang_counts.get("wikipedia", {})
    info["wordnet"] = lang_counts.get("wordnet", {})
    info["tokenizer"] = lang_counts.get("tokenizer")
    ranked_by = sorted({u["titles_ranked_by"] for u in info["units"].values() if u["titles_ranked_by"]})
    info["titles_ranked_by"] = (ranked_by[0] if len(ranked_by) == 1 else ",".join(ranked_by)) if ranked_by else None
    return info


def collect_stats(rows) -> dict:
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


def caps_table(lang_info: dict) -> dict[str, dict[str, int | None]]:
    """A language's entries by source before and after the caps: `before_caps` (candidates its
    units' rules offered), `cap` (summed over units; None when uncapped), `after_caps` (what the
    units took), `entries` (after the union of the units, in the written list)."""
    out = {}
    for source, st in lang_info.get("merge", {}).items():
        out[source] = {"before_caps": st.get("candidates", 0), "cap": st.get("cap"),
                       "after_caps": st.get("selected", 0), "entries": st.get("entries", 0)}
    return out


def _report(output: str, manifest: dict, counts: dict, timings: dict, n_agg: int) -> dict:
    langs = manifest["languages"]
    return {
        "output": output,
        "version": manifest["version"],
        "languages": len(langs),
        "entries": sum(v["entries"] for v in langs.values()),
        "entries_by_language": {k: v["entries"] for k, v in langs.items()},
        "entries_by_source": {k: caps_table(v) for k, v in langs.items()},
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
    by_source = report.get("entries_by_source", {})
    if by_source:
        lines.append("  entries by source, before caps -> after caps -> in the list:")
        for lang in sorted(by_source):
            cells = [f"{src} {v['before_caps']}->{v['after_caps']}->{v['entries']}"
                     + (f" (cap {v['cap']})" if v["cap"] is not None else "")
                     for src, v in by_source[lang].items()]
            lines.append(f"    {lang}: " + ", ".join(cells))
    return "\n".join(lines)
