"""Writers of small, well-formed inputs in the real formats (dumps, pageviews, wordnet files).

Used by tests and benchmarks to make inputs with known content (and known defects) without
copying third-party data into the repository.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass
class SamplePage:
    title: str
    text: str
    ns: int = 0
    redirect: str | None = None


_NAMESPACES = {-2: "Media", -1: "Special", 1: "Talk", 2: "User", 4: "Wikipedia", 6: "File", 10: "Template", 14: "Category"}


def dump_xml(pages: Iterable[SamplePage], lang: str = "en", truncate_last: bool = False) -> bytes:
    """A pages-articles XML document (UTF-8) in the layout of Wikimedia's dumps."""
    ns_xml = "".join(
        f'      <namespace key="{k}" case="first-letter">{escape(v)}</namespace>\n' for k, v in sorted(_NAMESPACES.items())
    ) + '      <namespace key="0" case="first-letter" />\n'
    parts = [
        f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="{lang}">\n'
        f"  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>{lang}wiki</dbname>\n"
        f"    <namespaces>\n{ns_xml}    </namespaces>\n  </siteinfo>\n"
    ]
    for i, p in enumerate(pages, 1):
        redirect = f'    <redirect title="{escape(p.redirect, {chr(34): "&quot;"})}" />\n' if p.redirect else ""
        parts.append(
            f"  <page>\n    <title>{escape(p.title)}</title>\n    <ns>{p.ns}</ns>\n    <id>{i}</id>\n{redirect}"
            f"    <revision>\n      <id>{1000 + i}</id>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f'      <text bytes="{len(p.text.encode())}" xml:space="preserve">{escape(p.text)}</text>\n'
            f"    </revision>\n  </page>\n"
        )
    doc = "".join(parts)
    if truncate_last:
        return doc[: len(doc) - 60].encode("utf-8")
    return (doc + "</mediawiki>\n").encode("utf-8")


def compress(data: bytes, kind: str) -> bytes:
    if kind == "bz2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "plain":
        return data
    raise ValueError(kind)


def write_dump(path: str | os.PathLike, pages: Iterable[SamplePage], lang: str = "en", kind: str = "bz2",
               truncate_last: bool = False) -> str:
    data = compress(dump_xml(pages, lang, truncate_last), kind)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def write_pageviews(path: str | os.PathLike, rows: Iterable[tuple[str, str, int]]) -> str:
    """An hourly pageviews file (gzip): `domain_code page_title count_views total_response_size`."""
    lines = "".join(f"{d} {t} {n} 0\n" for d, t, n in rows)
    with open(path, "wb") as f:
        f.write(gzip.compress(lines.encode("utf-8"), mtime=0))
    return os.fspath(path)


def write_omw(path: str | os.PathLike, iso: str, rows: Iterable[tuple[str, str]]) -> str:
    """An OMW tab file: header line, then `offset-pos<TAB>iso:lemma<TAB>lemma`."""
    body = f"# sample\t{iso}\thttp://example.org\tCC0\n" + "".join(f"{o}\t{iso}:lemma\t{lemma}\n" for o, lemma in rows)
    with open(path, "w", encoding="utf-8") as f:
        f.write(body)
    return os.fspath(path)
