"""Unigram / bigram / link counts of one Wikipedia dump, as flat records.

The per-dump work (`dump_records`) is plain Python: read -> strip -> tokenize -> count, with
partial counts flushed as records when they grow past a bound, so memory per task stays
bounded on full dumps. Records are flat tuples `(kind, lang, a, b, n)`; count records carry the
dump's unit (its Wikipedia code, metadata/alignment.py) in `lang`, because candidates are
selected and capped per Wikipedia code; stats carry the metadata language the dump feeds:

    u  unigram a                       n = count
    b  bigram (a, b)                   n = count
    a  article title a                 n = 1
    l  link target a (in-links)        n = count
    s  stat a of input file b          n = count (pages read, skipped by reason, errors)

The metadata job (jobs/build_metadata.py) runs `dump_records` as the body of one task per dump
and sums the records of all tasks per (kind, lang, a, b); what becomes an entry from those sums
is selection.py's.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

from curation.languages import OTHER
from metadata.config import MetadataConfig
from metadata.dump_reader import DumpInfo, dump_language, iter_pages
from metadata.markup import MarkupStripper, normalize_title
from metadata.tokenize import tokenizer_of

Record = tuple[str, str, str, str, int]
MAX_TOKEN_CHARS = 256


def dump_records(path: str, config: MetadataConfig, align_to_lid: bool = True,
                 lang: str | None = None) -> Iterator[Record]:
    """All count records of one dump file (never raises on bad input; problems become stats).

    `lang` overrides both the metadata language and the unit the dump's name gives.
    """
    from metadata.alignment import lang_for_wiki, tokenizer_lang, wiki_unit

    name = os.path.basename(path)
    stats: Counter = Counter()
    try:
        wiki = dump_language(path)
    except ValueError:
        wiki = ""
    unit = lang or (wiki_unit(wiki) if wiki else OTHER)
    lang = lang or (lang_for_wiki(wiki, align_to_lid) if wiki else OTHER)
    tok = tokenizer_of(tokenizer_lang(unit, lang), config)
    info = DumpInfo()
    unigrams: Counter = Counter()
    bigrams: Counter = Counter()
    links: Counter = Counter()
    flush_at = config.counter_flush_keys
    stripper = None
    pages = iter_pages(path, stats, info, max_page_bytes=4 * config.max_page_chars)
    try:
        for page in pages:
            if stripper is None:
                stripper = MarkupStripper(info.namespace_names(), config.max_nesting)
            if len(page.text) > config.max_page_chars:
                stats["page_too_large"] += 1
                stats["articles"] -= 1
                continue
            if config.max_pages_per_dump and stats["pages_counted"] >= config.max_pages_per_dump:
                stats["articles"] -= 1
                stats["skipped_page_limit"] += 1
                break
            yield ("a", unit, normalize_title(page.title), "", 1)
            try:
                plain = stripper.strip(page.text, links, stats)
                tok.count_into(plain, unigrams, bigrams)
            except Exception as exc:  # noqa: BLE001 - a bug-triggering page is counted, not fatal
                stats["page_error"] += 1
                stats[f"page_error:{type(exc).__name__}"] += 1
                continue
            stats["pages_counted"] += 1
            if len(unigrams) + len(bigrams) + len(links) > flush_at:
                yield from _flush(unit, unigrams, bigrams, links)
    except OSError as exc:  # the file itself cannot be opened
        stats["unreadable_input"] += 1
        stats[f"unreadable_input:{type(exc).__name__}"] += 1
    yield from _flush(unit, unigrams, bigrams, links)
    if tok.fallback_reason:
        stats["segmenter_fallback"] += 1
    stats[f"tokenizer:{tok.name}"] += 1
    for key, n in sorted(stats.items()):
        yield ("s", lang, key, name, int(n))
    if wiki:
        yield ("s", lang, f"wiki:{wiki}", name, 1)


def _flush(unit: str, unigrams: Counter, bigrams: Counter, links: Counter) -> Iterator[Record]:
    for w, n in unigrams.items():
        if len(w) <= MAX_TOKEN_CHARS:  # longer tokens can never become entries
            yield ("u", unit, w, "", n)
    for (a, b), n in bigrams.items():
        if len(a) + len(b) < MAX_TOKEN_CHARS:
            yield ("b", unit, a, b, n)
    for t, n in links.items():
        yield ("l", unit, t, "", n)
    unigrams.clear()
    bigrams.clear()
    links.clear()
