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

Views are summed per unit (the Wikipedia code: `zh-yue` -> `zh_yue`, metadata/alignment.py),
since titles are ranked and capped per code. For the languages built with MetaCLIP 1's rules
(`MetadataConfig.metaclip1_languages`, English) a second sum is kept, 'q' records: MetaCLIP 1
adds a line's views only when the line holds at least `metaclip1_title_min_hourly_views` (its
`int(count / 50) > 0`; a line of an hourly file is one hour, a daily file's hourly field is
read hour by hour) and only desktop lines (`en `, not `en.m`) with `metaclip1_title_desktop_only`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

from metadata.config import MetadataConfig
from metadata.dump_reader import ERRORS, open_decompressed, open_input
from metadata.markup import normalize_title

Record = tuple[str, str, str, str, int]


def parse_line(line: str) -> tuple[str | None, str | None, int, str | None]:
    """(wiki_code, title, views, reject_reason) of one line."""
    return parse_line_hours(line)[:4]


def parse_line_hours(line: str) -> tuple[str | None, str | None, int, str | None, bool, tuple[int, ...]]:
    """(wiki_code, title, views, reject_reason, desktop, views per hour of the line) of one line."""
    parts = line.split(" ")
    if len(parts) == 4:
        domain, title, views, _size = parts
        code, dot, project = domain.partition(".")
        if dot and project != "m":
            return None, None, 0, "other_project", False, ()
        desktop, hourly = not dot, None
    elif len(parts) == 6:
        domain, title, _pid, access, views, hourly = parts
        code, dot, project = domain.partition(".")
        if project not in ("wikipedia", "m.wikipedia"):
            return None, None, 0, "other_project", False, ()
        desktop = access == "desktop" and project == "wikipedia"
    else:
        return None, None, 0, "bad_line", False, ()
    try:
        n = int(views)
    except ValueError:
        return None, None, 0, "bad_count", False, ()
    if n < 0:
        return None, None, 0, "bad_count", False, ()
    if "%" in title:
        title = unquote(title, errors="strict") if _is_utf8_escapes(title) else title
    if ":" in title:
        return None, None, 0, "namespace_title", False, ()
    t = normalize_title(title)
    if not t or t == "-":
        return None, None, 0, "bad_line", False, ()
    return code.lower(), t, n, None, desktop, ((n,) if hourly is None else _hours(hourly))


_HOUR_RE = re.compile(r"([A-X])(\d+)")


def _hours(field: str) -> tuple[int, ...]:
    """Views per hour of a daily file's hourly field ('A7B3' = 7 in hour 0, 3 in hour 1)."""
    return tuple(int(n) for _h, n in _HOUR_RE.findall(field))


def metaclip1_views(views_per_hour: tuple[int, ...], desktop: bool, config: MetadataConfig) -> int:
    """What MetaCLIP 1 adds to a title's views for one line: its hours of >= min_hourly views."""
    if config.metaclip1_title_desktop_only and not desktop:
        return 0
    m = config.metaclip1_title_min_hourly_views
    return sum(v for v in views_per_hour if v >= m)


def _is_utf8_escapes(title: str) -> bool:
    try:
        unquote(title, errors="strict")
        return True
    except UnicodeDecodeError:
        return False


def pageview_records(path: str, align_to_lid: bool = True, languages: Iterable[str] | None = None,
                     flush_keys: int = 2_000_000, config: MetadataConfig | None = None) -> Iterator[Record]:
    """Records ('p', unit, title, '', views) summed within the file, ('q', unit, title, '', views)
    as MetaCLIP 1 sums them for its languages, then ('s', '', stat, file, n)."""
    from metadata.alignment import lang_for_unit, wiki_unit

    config = config or MetadataConfig()
    mc1 = set(config.metaclip1_languages)
    name = os.path.basename(path)
    wanted = set(languages) if languages else None  # metadata languages
    stats: Counter = Counter()
    views: Counter = Counter()
    mc1_views: Counter = Counter()
    lang_cache: dict[str, tuple[str, str]] = {}
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
                code, title, n, reason, desktop, hours = parse_line_hours(line)
                if reason:
                    stats[reason] += 1
                    continue
                got = lang_cache.get(code)
                if got is None:
                    unit = wiki_unit(code)
                    got = lang_cache[code] = (unit, lang_for_unit(unit, align_to_lid))
                unit, lang = got
                if wanted is not None and lang not in wanted:
                    stats["excluded_language"] += 1
                    continue
                views[(unit, title)] += n
                stats["kept"] += 1
                if lang in mc1:
                    m = metaclip1_views(hours, desktop, config)
                    if m:
                        mc1_views[(unit, title)] += m
                if len(views) + len(mc1_views) > flush_keys:
                    yield from _flush(views, mc1_views)
    except ERRORS as exc:
        stats["corrupt_input"] += 1
        stats[f"corrupt_input:{type(exc).__name__}"] += 1
    yield from _flush(views, mc1_views)
    for key, n in sorted(stats.items()):
        yield ("s", "", f"pageviews:{key}", name, int(n))


def _flush(views: Counter, mc1_views: Counter) -> Iterator[Record]:
    for (unit, title), n in views.items():
        yield ("p", unit, title, "", n)
    for (unit, title), n in mc1_views.items():
        yield ("q", unit, title, "", n)
    views.clear()
    mc1_views.clear()
