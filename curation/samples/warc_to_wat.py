"""WAT files derived from a real WARC, the way Common Crawl extracts links from HTML.

Real WATs with `HTML-Metadata` links are too large to ship, but real WARCs are small enough
(/work/shared/data/web). Parsing their HTML responses into `write_wat` pages gives WAT test
inputs with real pages, charsets, relative URLs and alt-texts: `<img>` src / data-src with
alt, title and data-image-title, `<a href>` and `<base href>`, as curation.inputs.wat expects.
html.parser is lenient; a page it chokes on keeps what was parsed before.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

from curation.inputs.wat import TEXT_FIELDS, iter_warc_records
from curation.samples.wat_writer import write_wat


class _ImageLinkParser(HTMLParser):
    """Collects <base href>, <title>, <img> (src, data-src, alt, title, data-image-title) and <a href>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.title_parts: list[str] = []
        self.in_title = False
        self.links: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = {}
        for name, value in attrs:
            a.setdefault(name.lower(), value if value is not None else "")
        if tag == "img":
            texts = {k: a[k] for k in TEXT_FIELDS if k in a}
            if a.get("src"):
                self.links.append({"path": "IMG@/src", "url": a["src"], **texts})
            if a.get("data-src"):
                self.links.append({"path": "IMG@/data-src", "url": a["data-src"], **texts})
        elif tag == "a" and a.get("href"):
            self.links.append({"path": "A@/href", "url": a["href"]})
        elif tag == "base" and a.get("href") and self.base is None:
            self.base = a["href"]
        elif tag == "title":
            self.in_title = True

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False

    def handle_data(self, data):
        if self.in_title:
            self.title_parts.append(data)


_CHARSET_RE = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.I)


def _decode_html(body: bytes, content_type: str) -> str:
    candidates = []
    m = _CHARSET_RE.search(content_type.encode("latin-1", "replace"))
    if m:
        candidates.append(m.group(1).decode("ascii"))
    m = _CHARSET_RE.search(body[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii"))
    for charset in [*candidates, "utf-8"]:
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", errors="replace")


def html_page(page_url: str, html: str) -> dict:
    """A `write_wat` page dict (links, title, base) extracted from an HTML document."""
    parser = _ImageLinkParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser is lenient; keep what was parsed on anything odd
        pass
    page = {"page_url": page_url, "title": " ".join("".join(parser.title_parts).split()), "links": parser.links}
    if parser.base:
        page["base"] = parser.base
    return page


def warc_pages(warc_path) -> list[dict]:
    """`write_wat` pages for the records of a real WARC: responses with their HTML links, requests."""
    pages = []
    for headers, payload, error in iter_warc_records(warc_path):
        if error is not None or headers is None:
            continue
        warc_type = headers.get("warc-type", "")
        uri = headers.get("warc-target-uri", "")
        date = headers.get("warc-date", "2020-08-08T17:27:41Z")
        if warc_type in ("request", "metadata"):
            pages.append({"page_url": uri, "type": warc_type, "date": date})
        elif warc_type == "response":
            head, _, body = payload.partition(b"\r\n\r\n")
            content_type = ""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-type":
                    content_type = value.strip().decode("latin-1")
            if "html" not in content_type.lower():
                pages.append({"page_url": uri, "type": "non_html", "date": date})
                continue
            page = html_page(uri, _decode_html(body, content_type))
            page["date"] = date
            pages.append(page)
    return pages


def warc_to_wat(warc_path, wat_path: str | os.PathLike) -> int:
    """Write the WAT of a WARC (request and response records; links as Common Crawl extracts them)."""
    return write_wat(wat_path, warc_pages(warc_path))
