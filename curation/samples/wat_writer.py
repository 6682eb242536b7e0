"""Writes WAT files in Common Crawl's layout, for tests and the built-in sample (never the curate job).

There is no real Common Crawl WAT with HTML links small enough to ship, so tests and
curation.samples.alt_texts build their WATs from page dicts (see `write_wat`) in the published
layout that curation.inputs.wat reads: gzip members of one WARC record each, a warcinfo record,
then one metadata record per page. Output is byte-for-byte reproducible (gzip mtime 0, record
ids hashed from the file name and position), and a rewrite with identical content leaves the
file untouched, so incremental curate reruns over a regenerated sample reuse their state.
"""

from __future__ import annotations

import filecmp
import gzip
import hashlib
import json
import os
import uuid as uuidlib
from collections.abc import Iterable

from curation.inputs.wat import TEXT_FIELDS


def encode_warc_record(warc_type: str, payload: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One uncompressed WARC/1.0 record (header block, payload, two CRLFs)."""
    lines = [b"WARC/1.0", f"WARC-Type: {warc_type}".encode()]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode())
    lines.append(f"Content-Length: {len(payload)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload + b"\r\n\r\n"


def gzip_member(data: bytes) -> bytes:
    """One gzip member with mtime 0, so written files are byte-for-byte reproducible."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def _record_id(*parts: str) -> str:
    return f"<urn:uuid:{uuidlib.UUID(hashlib.md5('|'.join(parts).encode()).hexdigest())}>"


def _wat_link(link: dict) -> dict:
    out = {"path": link.get("path", "IMG@/src"), "url": link.get("url")}
    for key in (*TEXT_FIELDS, "text", "target", "rel"):
        if link.get(key) is not None:
            out[key] = link[key]
    return out


def _wat_envelope(page: dict, filename: str, index: int) -> dict:
    kind = page.get("type", "response")
    page_url = page["page_url"]
    date = page.get("date", "2020-08-08T17:27:41Z")
    warc_type = kind if kind in ("request", "metadata") else "response"
    header = {
        "WARC-Type": warc_type,
        "WARC-Date": date,
        "WARC-Record-ID": _record_id(filename, str(index), page_url, kind),
        "WARC-Target-URI": page_url,
        "Content-Type": (
            "application/warc-fields" if warc_type == "metadata" else f"application/http; msgtype={warc_type}"
        ),
    }
    payload_meta: dict = {"Actual-Content-Type": header["Content-Type"]}
    if kind == "metadata":
        payload_meta["WARC-Metadata-Metadata"] = {"Metadata-Records": [{"Name": "fetchTimeMs", "Value": "118"}]}
    elif kind == "request":
        payload_meta["HTTP-Request-Metadata"] = {
            "Request-Message": {"Method": "GET", "Path": "/", "Version": "HTTP/1.1"},
            "Headers": {"User-Agent": "CCBot/2.0 (https://commoncrawl.org/faq/)"},
        }
    else:
        content_type = "image/jpeg" if kind == "non_html" else "text/html; charset=utf-8"
        response = {
            "Response-Message": {"Version": "HTTP/1.1", "Status": "200", "Reason": "OK"},
            "Headers": {"Content-Type": content_type},
            "Entity-Metadata": {"Actual-Content-Type": content_type.split(";")[0]},
        }
        if kind != "non_html":
            head: dict = {"Title": page.get("title", "")}
            if page.get("base"):
                head["Base"] = page["base"]
            html: dict = {"Head": head}
            links = [_wat_link(ln) for ln in page.get("links", [])]
            if links or page.get("empty_links_list"):
                html["Links"] = links
            response["HTML-Metadata"] = html
        payload_meta["HTTP-Response-Metadata"] = response
    return {
        "Container": {"Filename": filename.replace(".wat.gz", ".warc.gz"), "Compressed": True, "Offset": str(index)},
        "Envelope": {"Format": "WARC", "WARC-Header-Metadata": header, "Payload-Metadata": payload_meta},
    }


def wat_record_bytes(page: dict, filename: str = "sample.warc.wat.gz", index: int = 0) -> bytes:
    """The uncompressed WAT metadata record describing one page (see `write_wat`)."""
    doc = _wat_envelope(page, filename, index)
    payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    header = doc["Envelope"]["WARC-Header-Metadata"]
    return encode_warc_record(
        "metadata",
        payload,
        {
            "WARC-Target-URI": page["page_url"],
            "WARC-Date": header["WARC-Date"],
            "WARC-Record-ID": _record_id(filename, str(index), "wat"),
            "WARC-Refers-To": header["WARC-Record-ID"],
            "Content-Type": "application/json",
        },
    )


def warcinfo_record_bytes(filename: str) -> bytes:
    """The uncompressed warcinfo record that starts a WAT file."""
    fields = (  # the module's old name stays in the bytes: the sample files must not change
        "Software-Info: worldclip curation.wat\r\n"
        "format: WARC File Format 1.0\r\n"
        "conformsTo: http://bibnum.bnf.fr/WARC/WARC_ISO_28500_version1_latestdraft.pdf\r\n"
    ).encode()
    return encode_warc_record(
        "warcinfo",
        fields,
        {"WARC-Filename": filename, "WARC-Record-ID": _record_id(filename, "warcinfo"), "Content-Type": "application/warc-fields"},
    )


def write_wat(path: str | os.PathLike, pages: Iterable[dict], warcinfo: bool = True) -> int:
    """Write a WAT file (gzip, one member per record, like Common Crawl's) and return its record count.

    Each page is {page_url, links: [{url, alt?, title?, data-image-title?, path? ('IMG@/src')}],
    title?, base? (<base href>), date?, type? ('response' | 'request' | 'metadata' | 'non_html')}. Keys whose
    value is None are left out of a link, so `alt=""` (an empty alt) and no alt differ. The file
    is written to a temporary name and renamed, and is byte-identical for identical pages.
    """
    path = os.fspath(path)
    filename = os.path.basename(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    count = 0
    with open(tmp, "wb") as f:
        if warcinfo:
            f.write(gzip_member(warcinfo_record_bytes(filename)))
            count += 1
        for index, page in enumerate(pages):
            f.write(gzip_member(wat_record_bytes(page, filename, index)))
            count += 1
    if os.path.isfile(path) and filecmp.cmp(tmp, path, shallow=False):
        os.unlink(tmp)  # unchanged: keep the old file (and its mtime) so incremental reruns reuse it
    else:
        os.replace(tmp, path)
    return count
