"""Wikimedia pageview files -> summed views per (language, article title).

Format (https://dumps.wikimedia.org/other/pageviews/, hourly `pageviews-YYYYMMDD-HH0000.gz`):
one line per page, `domain_code page_title count_views total_response_size`, where
domain_code is the Wikipedia code (`en`) or its mobile site (`en.m`); other projects carry a
suffix (`en.b` Wikibooks, `en.d` Wiktionary, ...) and are skipped. The daily "pageviews
complete" format (`en.wikipedia title page_id access count hourly`) is read too.

Titles are normalised like page titles (`_` -> space, percent-escapes decoded, first letter
upper-case); titles with ':' (other namespaces, and some article names, as in the paper) are
dropped. Every line is either summed or counted under a reason in the stats:
`bad_line`, `bad_count`, `other_project`, `namespace_title`, `invalid_utf8`, `excluded_language`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

from metadata.dump_reader import ERRORS, open_decompressed, open_input
from metadata.markup import normalize_title

Record = tuple[str, str, str, str, int]


def parse_line(line: str) -> tuple[str | None, str | None, int, str | None]:
    """(wiki_code, title, views, reject_reason) of one line."""
    parts = line.split(" ")
    if len(parts) == 4:
        domain, title, views, _size = parts
        code, dot, project = domain.partition(".")
        if dot and project != "m":
            return None, None, 0, "other_project"
    elif len(parts) == 6:
        domain, title, _pid, _access, views, _hourly = parts
        code, dot, project = domain.partition(".")
        if project not in ("wikipedia", "m.wikipedia"):
            return None, None, 0, "other_project"
    else:
        return None, None, 0, "bad_line"
    try:
        n = int(views)
    except ValueError:
        return None, None, 0, "bad_count"
    if n < 0:
        return None, None, 0, "bad_count"
    if "%" in title:
        title = unquote(title, errors="strict") if _is_utf8_escapes(title) else title
    if ":" in title:
        return None, None, 0, "namespace_title"
    t = normalize_title(title)
    if not t or t == "-":
        return None, None, 0, "bad_line"
    return code.lower(), t, n, None


def _is_utf8_escapes(title: str) -> bool:
    try:
        unquote(title, errors="strict")
        return True
    except UnicodeDecodeError:
        return False


def pageview_records(path: str, align_to_lid: bool = True, languages: Iterable[str] | None = None,
                     flush_keys: int = 2_000_000) -> Iterator[Record]:
    """Records ('p', lang, title, '', views) summed within the file, then ('s', '', stat, file, n)."""
    from metadata.alignment import lang_for_wiki

    name = os.path.basename(path)
    wanted = set(languages) if languages else None  # metadata languages
    stats: Counter = Counter()
    views: Counter = Counter()
    lang_cache: dict[str, str] = {}
    stats["inputs"] += 1
    try:
        with open_input(path) as raw:
            stream = open_decompressed(raw)
            for bline in stream:
                stats["lines"] += 1
                try:
                    line = bline.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    stats["invalid_utf8"] += 1
                    continue
                if not line:
                    stats["bad_line"] += 1
                    continue
                code, title, n, reason = parse_line(line)
                if reason:
                    stats[reason] += 1
                    continue
                lang = lang_cache.get(code)
                if lang is None:
                    lang = lang_cache[code] = lang_for_wiki(code, align_to_lid)
                if wanted is not None and lang not in wanted:
                    stats["excluded_language"] += 1
                    continue
                views[(lang, title)] += n
                stats["kept"] += 1
                if len(views) > flush_keys:
                    yield from _flush(views)
    except ERRORS as exc:
        stats["corrupt_input"] += 1
        stats[f"corrupt_input:{type(exc).__name__}"] += 1
    yield from _flush(views)
    for key, n in sorted(stats.items()):
        yield ("s", "", f"pageviews:{key}", name, int(n))


def _flush(views: Counter) -> Iterator[Record]:
    for (lang, title), n in views.items():
        yield ("p", lang, title, "", n)
    views.clear()
