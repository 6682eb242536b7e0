"""WAT parsing (curation.inputs.wat), the event protocol and its accounting, WAT writing and WARC->WAT
conversion (curation.samples). url/text tables: tests/test_inputs.py."""

from __future__ import annotations

import gzip
import io
import json
import os

from curation.inputs import RECORD_REJECT_REASONS, SKIP_REASONS, EventCounter, iter_wat_events, wat
from curation.samples.warc_to_wat import warc_pages, warc_to_wat
from curation.samples.wat_writer import (
    encode_warc_record,
    gzip_member,
    warcinfo_record_bytes,
    wat_record_bytes,
    write_wat,
)
from curation.urls import image_uuid
from tests.conftest import shared_file

PAGE = "https://www.example.de/de/artikel/seite.html"


def per_record(events):
    """Split an event stream into one list of events per record; checks 'record' comes first."""
    records = []
    for kind, value in events:
        if kind == "record":
            assert value is None
            records.append([])
        else:
            assert records, f"{kind} event before any record"
            records[-1].append((kind, value))
    return records


def assert_accounted(records):
    """Each record: one skip, or one record-level reject, or only link events."""
    for evs in records:
        skips = [v for k, v in evs if k == "skip"]
        rec_rejects = [v for k, v in evs if k == "reject" and v[0] in RECORD_REJECT_REASONS]
        if skips or rec_rejects:
            assert len(evs) == 1, evs
            assert not skips or skips[0] in SKIP_REASONS
        for kind, value in evs:
            assert kind in ("pair", "reject", "skip")
            if kind == "reject":
                reason, detail = value
                assert isinstance(detail, str) and len(detail) <= 200


def pairs_of(events):
    return [v for k, v in events if k == "pair"]


# --------------------------------------------------------------------------- generated WAT


def test_write_wat_round_trip(tmp_path):
    pages = [
        {"type": "request", "page_url": PAGE},
        {
            "page_url": PAGE,
            "title": "Seite",
            "links": [
                {"path": "A@/href", "url": "/de/index.html", "text": "Start"},
                {"url": "/bilder/hund.jpg", "alt": "Hund im Garten", "title": "Unser Hund"},
                {"url": "katze.jpg", "alt": "  Katze\n auf dem  Dach "},
                {"url": "//cdn.example.de/x.jpg", "data-image-title": "Berg"},
                {"path": "IMG@/data-src", "url": "https://Cdn.Example.de:443/lazy.jpg#a", "alt": "Fluss"},
                {"url": "/leer.jpg", "alt": ""},
                {"url": "/ohne.jpg"},
                {"url": "data:image/gif;base64,R0lGODlh", "alt": "Pixel"},
                {"url": "javascript:void(0)", "alt": "Klick"},
            ],
        },
        {"type": "non_html", "page_url": PAGE.replace(".html", ".jpg")},
        {"page_url": "https://www.example.de/leer.html", "links": [{"path": "A@/href", "url": "/"}]},
        {"page_url": "https://www.example.de/ohne-links.html"},
    ]
    path = tmp_path / "a.wat.gz"
    assert write_wat(path, pages) == 6
    events = list(iter_wat_events(str(path), "a"))
    records = per_record(events)
    assert len(records) == 6
    assert_accounted(records)
    assert records[0] == [("skip", "not_metadata")]  # warcinfo
    assert records[1] == [("skip", "not_response")]
    assert records[3] == [("skip", "not_html")]
    assert records[4] == [("skip", "no_image_links")]
    assert records[5] == [("skip", "no_image_links")]
    got = [(p["url"], p["text"], p["source"], p["page_url"]) for p in pairs_of(records[2])]
    assert got == [
        ("https://www.example.de/bilder/hund.jpg", "Hund im Garten", "alt", PAGE),
        ("https://www.example.de/bilder/hund.jpg", "Unser Hund", "title", PAGE),
        ("https://www.example.de/de/artikel/katze.jpg", "Katze auf dem Dach", "alt", PAGE),
        ("https://cdn.example.de/x.jpg", "Berg", "data-image-title", PAGE),
        ("https://cdn.example.de/lazy.jpg", "Fluss", "alt", PAGE),
    ]
    for p in pairs_of(records[2]):
        assert p["uuid"] == image_uuid(p["url"])
    rejects = [v[0] for k, v in records[2] if k == "reject"]
    assert rejects == ["empty_text", "no_text", "data_uri", "unsupported_scheme"]
    counter = EventCounter().update(events)
    assert counter.records == 6 and counter.records_with_links == 1 and counter.pairs == 5
    assert counter.as_dict()["link_rejects"] == {"data_uri": 1, "no_text": 1, "unsupported_scheme": 1}
    assert counter.as_dict()["text_rejects"] == {"empty_text": 1}
    # same pages, same bytes; file object input gives the same events as a path
    (tmp_path / "again").mkdir()
    write_wat(tmp_path / "again" / "a.wat.gz", pages)
    assert (tmp_path / "again" / "a.wat.gz").read_bytes() == path.read_bytes()
    with open(path, "rb") as f:
        assert list(iter_wat_events(f, "a")) == events
    # and an uncompressed WAT reads the same
    assert list(iter_wat_events(io.BytesIO(gzip.decompress(path.read_bytes())), "a")) == events


def test_base_href_changes_resolution(tmp_path):
    pages = [
        {"page_url": PAGE, "base": "https://static.example.de/assets/", "links": [{"url": "a.jpg", "alt": "Hund"}]},
    ]
    write_wat(tmp_path / "b.wat.gz", pages, warcinfo=False)
    (pair,) = pairs_of(iter_wat_events(str(tmp_path / "b.wat.gz"), "b"))
    assert pair["url"] == "https://static.example.de/assets/a.jpg"
    assert pair["page_url"] == PAGE


# --------------------------------------------------------------------------- bad WAT


def _metadata_record(payload: bytes, uri: str = PAGE) -> bytes:
    return encode_warc_record("metadata", payload, {"WARC-Target-URI": uri, "Content-Type": "application/json"})


def _links_payload(links, uri: str = PAGE) -> dict:
    return {
        "Envelope": {
            "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": uri},
            "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": links}}},
        }
    }


def bad_wat_bytes() -> tuple[bytes, list[str]]:
    """A WAT with one problem per record; returns its bytes and the expected outcome per record."""
    good = wat_record_bytes({"page_url": PAGE, "links": [{"url": "/a.jpg", "alt": "Hund"}]})
    huge_alt = "Hund " * 200_000  # 1 MB
    mixed = json.dumps(
        _links_payload(
            [
                {"path": "IMG@/src", "url": "/big.jpg", "alt": huge_alt},
                {"path": "IMG@/src", "url": "/empty.jpg", "alt": ""},
                {"path": "IMG@/src", "url": "/both.jpg", "alt": "", "title": "Katze"},
                {"path": "IMG@/src", "url": "/surrogate.jpg", "alt": "Hund \ud800"},
                {"path": "IMG@/src", "url": 17, "alt": "Zahl"},
                {"path": "IMG@/src", "alt": "keine URL"},
                {"path": "IMG@/src", "url": "/typ.jpg", "alt": ["keine", "Zeichenkette"]},
                "not a link",
            ]
        )
    ).encode()
    members = [
        (warcinfo_record_bytes("bad.wat.gz"), "skip:not_metadata"),
        (good, "pairs"),
        (_metadata_record(b'{"Envelope": {"Payload-Metadata": '), "reject:malformed_json"),
        (_metadata_record(b'{"Envelope": "\xff\xfe broken"}'), "reject:invalid_utf8"),
        (_metadata_record(b'{"Container": {}}'), "reject:missing_keys"),
        (_metadata_record(b'[1, 2, 3]'), "reject:missing_keys"),
        (_metadata_record(json.dumps({"Envelope": {"Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": "x"}}}}}).encode()), "reject:missing_keys"),
        (_metadata_record(json.dumps(_links_payload([{"path": "IMG@/src", "url": "/a.jpg", "alt": "x"}], uri="")).encode(), uri=""), "reject:missing_keys"),
        (_metadata_record(mixed), "pairs"),
        (b"this is not a WARC record\r\n\r\n", "reject:bad_warc_header"),
        (b"WARC/1.0\r\nWARC-Type: metadata\r\nContent-Length: many\r\n\r\n{}\r\n\r\n", "reject:bad_warc_header"),
        (good, "pairs"),
    ]
    data = b"".join(gzip_member(m) for m, _ in members)
    expected = [e for _, e in members]
    # the last member is cut in half: a truncated gzip
    last = gzip_member(good)
    data += last[: len(last) // 2]
    expected.append("reject:truncated_gzip")
    return data, expected


def outcome(evs) -> str:
    for kind, value in evs:
        if kind == "skip":
            return f"skip:{value}"
        if kind == "reject" and value[0] in RECORD_REJECT_REASONS:
            return f"reject:{value[0]}"
    return "pairs"


def test_bad_wat_every_record_accounted(tmp_path):
    data, expected = bad_wat_bytes()
    path = tmp_path / "bad.wat.gz"
    path.write_bytes(data)
    events = list(iter_wat_events(str(path), "bad"))  # must not raise
    records = per_record(events)
    assert_accounted(records)
    assert [outcome(r) for r in records] == expected
    mixed = records[8]
    assert [v["text"] for v in pairs_of(mixed)] == ["Katze", "Hund"]  # title of /both.jpg, cleaned surrogate
    assert [v[0] for k, v in mixed if k == "reject"] == [
        "text_too_long", "empty_text", "empty_text", "invalid_url", "invalid_url", "not_text",
    ]
    counter = EventCounter().update(events)
    assert counter.records == len(expected)
    assert counter.records == (
        counter.records_with_links + sum(counter.skipped.values()) + sum(counter.record_rejects.values())
    )
    assert counter.records_with_links == 3
    assert counter.record_rejects == {
        "malformed_json": 1, "invalid_utf8": 1, "missing_keys": 4, "bad_warc_header": 2, "truncated_gzip": 1,
    }
    assert counter.pairs == 4


def test_bad_plain_wat_and_truncated_record(tmp_path):
    data, expected = bad_wat_bytes()
    plain = gzip.decompress(data[: data.rfind(b"\x1f\x8b\x08")])  # all complete members, uncompressed
    cut = plain + wat_record_bytes({"page_url": PAGE, "links": []})[:-40]
    records = per_record(iter_wat_events(io.BytesIO(cut), "plain"))
    assert [outcome(r) for r in records] == expected[:-1] + ["reject:truncated_record"]


def test_corrupt_gzip(tmp_path):
    good = gzip_member(wat_record_bytes({"page_url": PAGE, "links": [{"url": "/a.jpg", "alt": "Hund"}]}))
    broken = bytearray(gzip_member(wat_record_bytes({"page_url": PAGE, "links": [{"url": "/b.jpg", "alt": "Katze"}]})))
    broken[20:40] = b"\x00" * 20
    records = per_record(iter_wat_events(io.BytesIO(good + bytes(broken)), "c"))
    assert outcome(records[0]) == "pairs"
    assert outcome(records[-1]) in ("reject:corrupt_gzip", "reject:truncated_gzip")


def test_oversized_record_is_skipped_without_loading(monkeypatch):
    monkeypatch.setattr(wat, "MAX_RECORD_BYTES", 1000)
    big = _metadata_record(json.dumps(_links_payload([{"path": "IMG@/src", "url": "/a.jpg", "alt": "x" * 5000}])).encode())
    small = wat_record_bytes({"page_url": PAGE, "links": [{"url": "/a.jpg", "alt": "Hund"}]})
    records = per_record(iter_wat_events(io.BytesIO(gzip_member(big) + gzip_member(small)), "o"))
    assert [outcome(r) for r in records] == ["reject:record_too_large", "pairs"]


def test_empty_input():
    assert list(iter_wat_events(io.BytesIO(b""), "e")) == []
    assert list(iter_wat_events(io.BytesIO(gzip.compress(b"")), "e")) == []


# --------------------------------------------------------------------------- real data


def test_real_whirlwind_wat_layout():
    events = list(iter_wat_events(str(shared_file("web/whirlwind.warc.wat.gz")), "whirlwind"))
    assert per_record(events) == [[("skip", "not_metadata")], [("skip", "not_response")]]


def test_wat_from_real_warc(tmp_path):
    warc = shared_file("web/cc-2020-34-sample.warc.gz")
    pages = warc_pages(warc)
    # 16 request/response/metadata triples
    assert sum(1 for p in pages if p.get("type") == "request") >= 16
    responses = [p for p in pages if p.get("type", "response") == "response"]
    assert len(responses) == 16
    img_src = sum(1 for p in responses for ln in p["links"] if ln["path"] == "IMG@/src")
    assert 130 <= img_src <= 155  # the WARC holds 155 "<img" (any case), a few in scripts or without src
    out = tmp_path / "real.wat.gz"
    n = warc_to_wat(warc, out)
    events = list(iter_wat_events(str(out), "real"))
    records = per_record(events)
    assert len(records) == n
    assert_accounted(records)
    counter = EventCounter().update(events)
    assert counter.records_with_links >= 10
    pairs = pairs_of(events)
    texts = {p["text"] for p in pairs}
    # real alt-texts in Russian, Chinese, Dutch and German survive charset decoding (cp1251, gbk, ...)
    assert "Стратегия пожарной безопасности" in texts
    assert "中国新闻网" in texts
    assert any("naambellen" in t for t in texts)
    assert any("Radsport" in t for t in texts)
    # relative src attributes were resolved against their page
    assert all(p["url"].startswith(("http://", "https://")) for p in pairs)
    relative = [
        (p["page_url"], ln["url"]) for p in responses for ln in p["links"]
        if ln["path"] == "IMG@/src" and not ln["url"].startswith(("http", "//", "data:"))
    ]
    assert relative, "the real pages use relative image URLs"
    assert counter.link_rejects["no_text"] > 0  # most real <img> tags have no alt


class _ReadOnly:
    """A stream with nothing but read(n), like an HTTP or S3 response body."""

    def __init__(self, data: bytes):
        self.buf = io.BytesIO(data)

    def read(self, n=-1):
        return self.buf.read(n)


def test_minimal_stream_object():
    data, expected = bad_wat_bytes()
    records = per_record(iter_wat_events(_ReadOnly(data), "stream"))
    assert [outcome(r) for r in records] == expected


def test_rewriting_identical_wat_keeps_the_file_so_incremental_reruns_reuse_it(tmp_path):
    pages = [{"page_url": PAGE, "links": [{"url": "/a.jpg", "alt": "Hund"}]}]
    path = tmp_path / "s.wat.gz"
    write_wat(path, pages)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    write_wat(path, pages)
    assert path.stat().st_mtime_ns == 1_000_000_000, "identical content must not touch the file"
    write_wat(path, pages + [{"page_url": PAGE, "links": [{"url": "/b.jpg", "alt": "Katze"}]}])
    assert path.stat().st_mtime_ns != 1_000_000_000, "changed content replaces the file"
    assert not list(tmp_path.glob("*.tmp-*"))
