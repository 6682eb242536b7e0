"""The input registry (curation.inputs) and the url/text table readers: Parquet, JSONL, CSV.

Every format is registered once; auto-detection, the config's choices and the dispatch come from
that registry. The table formats must agree: the same rows give the same records, pairs and
rejects whichever format holds them, through the reader and through Annotator (run_input).
"""

from __future__ import annotations

import csv
import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import annotate, inputs
from curation.inputs import EventCounter, iter_table_events
from curation.samples.alt_texts import write_sample_metadata
from curation.urls import image_uuid
from tests.conftest import shared_file
from tests.test_wat import outcome, pairs_of, per_record

# (url, text) rows that exercise every row outcome of a table: kept, normalised, each URL and text reject
ROWS = [
    ("https://a.example/1.jpg", "Hund"),
    ("data:image/png;base64,AA", "Katze"),
    ("relative.jpg", "Maus"),
    ("https://a.example/2.jpg", ""),
    ("javascript:x", "Katze"),
    ("HTTPS://A.Example:443/3.jpg#top", '  dog,\n and "cat"  '),  # a comma, a newline and quotes inside a field
    ("https://a.example/4.jpg", "x" * 5000),
    ("https://a.example/5.jpg", "Hund " * 40_000),  # 200,000 characters: above the csv module's default field limit
    ("", "no url"),
    ("https://a.example/6.jpg", "Ünïcödé 日本語 текст"),
]


def write_table(path, fmt: str, rows, url_col: str = "URL", text_col: str = "TEXT", extra: bool = False) -> str:
    """`rows` as a url/text table in `fmt` (gzip for a .gz name); `extra` adds an id column first."""
    cols = {"id": [str(i) for i in range(len(rows))]} if extra else {}
    cols[text_col] = [t for _, t in rows]
    cols[url_col] = [u for u, _ in rows]
    if fmt == "parquet":
        pq.write_table(pa.table(cols), path)
        return str(path)
    if fmt == "jsonl":
        data = "".join(json.dumps(dict(zip(cols, row, strict=True)), ensure_ascii=False) + "\n"
                       for row in zip(*cols.values(), strict=True)).encode()
    else:
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow(list(cols))
        writer.writerows(zip(*cols.values(), strict=True))
        data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)
    return str(path)


# --------------------------------------------------------------------------- the registry


def test_registry_is_the_single_source_of_formats_and_extensions():
    assert inputs.FORMATS == tuple(inputs.READERS) and {"wat", "parquet", "jsonl", "csv"} <= set(inputs.FORMATS)
    for name, reader in inputs.READERS.items():
        assert reader.name == name and reader.extensions
        for ext in reader.extensions:
            assert ext == ext.lower() and ext.startswith(".")
            for path in (f"d/part-0{ext}", f"s3://b/k/PART-0{ext.upper()}"):
                assert inputs.format_of_name(path) == name
                assert inputs.input_format(path) == name
                assert inputs.input_format(path, name) == name
        if reader.columnar:
            assert type(reader).pair_chunks is not inputs.Reader.pair_chunks
    assert inputs.input_format("x/CC-MAIN-1.warc.wat.gz") == "wat"
    assert inputs.input_format("x/no-extension") == inputs.DEFAULT_FORMAT == "wat"
    with pytest.raises(ValueError, match="unknown input format"):
        inputs.input_format("a.csv", "xml")
    # the modules of every registered reader are fingerprinted as code that decides the curate output
    from jobs.curate import CODE_FILES

    assert {f"curation/inputs/{type(r).__module__.rsplit('.', 1)[1]}.py" for r in inputs.READERS.values()} \
        <= set(inputs.CODE_FILES) <= set(CODE_FILES)


def test_csv_is_detected_by_extension():
    for path in ("a.csv", "dir/a.csv.gz", "A.CSV.GZ", "s3://bucket/laion/part-00001.csv"):
        assert inputs.input_format(path) == "csv"
    assert inputs.input_format("a.csv.bak") == "wat"
    assert inputs.input_format("a.csv", "jsonl") == "jsonl"  # the config wins over the name


def test_table_formats_come_from_the_registry(tmp_path):
    tables = [name for name, r in inputs.READERS.items() if r.table]
    assert set(tables) == {"parquet", "jsonl", "csv"}
    with pytest.raises(ValueError, match="csv, jsonl|jsonl, csv"):
        list(iter_table_events(str(tmp_path / "t.txt")))
    with pytest.raises(ValueError, match="format"):
        list(iter_table_events(str(tmp_path / "t.wat.gz")))


# --------------------------------------------------------------------------- Parquet, JSONL


def test_real_alt_text_parquet():
    events = list(iter_table_events(str(shared_file("web/alt-text-1000.parquet")), fmt=None))
    counter = EventCounter().update(events)
    assert counter.records == 1000
    assert counter.pairs + sum(counter.link_rejects.values()) + sum(counter.text_rejects.values()) == 1000
    assert counter.pairs > 900
    assert all(p["source"] == "table" and p["uuid"] == image_uuid(p["url"]) for p in pairs_of(events))
def test_parquet_table_with_bad_rows(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({
            "image_url": ["https://a.example/1.jpg", "data:image/png;base64,AA", "relative.jpg", "https://a.example/2.jpg", None],
            "caption": ["Hund", "Katze", "Maus", None, "x"],
        }),
        path,
    )
    events = list(iter_table_events(str(path), url_col="image_url", text_col="caption", batch_size=2))
    records = per_record(events)
    assert [r[0][1][0] if r[0][0] == "reject" else "pair" for r in records] == [
        "pair", "data_uri", "invalid_url", "empty_text", "invalid_url",
    ]
    with pytest.raises(ValueError, match="no column"):
        list(iter_table_events(str(path)))


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100)
    events = list(iter_table_events(str(path)))
    assert [k for k, _ in events] == ["record", "reject"] and events[1][1][0] == "corrupt_table"


@pytest.mark.parametrize("compress", [False, True])
def test_jsonl_table(tmp_path, compress):
    lines = [
        json.dumps({"URL": "https://a.example/1.jpg", "TEXT": "Hund"}).encode(),
        b'{"URL": "https://a.example/2.jpg", "TEXT": ',
        b"",
        b'{"URL": "https://a.example/3.jpg", "TEXT": "\xff"}',
        json.dumps({"url": "https://a.example/4.jpg"}).encode(),
        json.dumps(["a", "b"]).encode(),
        json.dumps({"URL": "javascript:x", "TEXT": "Katze"}).encode(),
        json.dumps({"URL": "https://a.example/5.jpg", "TEXT": "Katze"}, ensure_ascii=False).encode(),
    ]
    data = b"\n".join(lines) + b"\n"
    name = "t.jsonl.gz" if compress else "t.jsonl"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compress else data)
    events = list(iter_table_events(str(path)))
    records = per_record(events)
    assert [r[0][1][0] if r[0][0] == "reject" else "pair" for r in records] == [
        "pair", "malformed_json", "invalid_utf8", "missing_keys", "missing_keys", "unsupported_scheme", "pair",
    ]
    if compress:  # a truncated gzip JSONL keeps what it read and reports the cut
        path.write_bytes(gzip.compress(data)[:-30])
        tail = per_record(iter_table_events(str(path)))
        assert outcome(tail[-1]) == "reject:truncated_gzip"


def test_table_format_needs_a_hint(tmp_path):
    with pytest.raises(ValueError, match="format"):
        list(iter_table_events(str(tmp_path / "t.txt")))
    with pytest.raises(ValueError, match="format"):
        list(iter_table_events(str(tmp_path / "t.parquet"), fmt="xml"))



# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_csv_rows_give_what_jsonl_and_parquet_give(tmp_path, name):
    """Same rows, same events: records, pairs (normalised URL, clean text, uuid) and rejects with details."""
    want = list(iter_table_events(write_table(tmp_path / "t.jsonl", "jsonl", ROWS)))
    assert want == list(iter_table_events(write_table(tmp_path / "t.parquet", "parquet", ROWS)))
    got = list(iter_table_events(write_table(tmp_path / name, "csv", ROWS)))
    assert got == want
    assert [r[0][1][0] if r[0][0] == "reject" else "pair" for r in per_record(got)] == [
        "pair", "data_uri", "invalid_url", "empty_text", "unsupported_scheme", "pair", "text_too_long",
        "text_too_long", "invalid_url", "pair",
    ]
    assert pairs_of(got)[1]["text"] == 'dog, and "cat"' and pairs_of(got)[1]["url"] == "https://a.example/3.jpg"
    # other column names and order, an extra column: the url_col / text_col flags pick them
    named = write_table(tmp_path / f"named-{name}", "csv", ROWS, "image_url", "caption", extra=True)
    assert list(iter_table_events(named, url_col="image_url", text_col="caption")) == want
    with pytest.raises(ValueError, match="no column"):
        list(iter_table_events(named))


def test_csv_bad_rows_cost_only_themselves(tmp_path):
    data = (
        "\ufeffURL,TEXT\r\n"  # a byte-order mark, as spreadsheet exports write it
        "https://a.example/1.jpg,Hund\r\n"
        "\r\n"
        "https://a.example/3.jpg,"
    ).encode() + b"\xff\xfe\r\n" + (
        "https://a.example/4.jpg\r\n"
        '"https://a.example/5.jpg","Katze, ""die"" schwarze"\r\n'
        "javascript:x,Katze\r\n"
        "https://a.example/6.jpg,Maus,extra\n"
    ).encode()
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    events = list(iter_table_events(str(path)))
    records = per_record(events)
    assert [r[0][1][0] if r[0][0] == "reject" else "pair" for r in records] == [
        "pair", "invalid_utf8", "missing_keys", "pair", "unsupported_scheme", "pair",
    ]
    assert records[1][0][1][1] == "https://a.example/3.jpg,\\xff\\xfe"  # the bad bytes, shown in the detail
    assert [p["text"] for p in pairs_of(events)] == ["Hund", 'Katze, "die" schwarze', "Maus"]
    counter = EventCounter().update(events)
    assert counter.records == 6 and counter.record_rejects == {"invalid_utf8": 1, "missing_keys": 1}
    # a file object reads the same as a path (s3:// inputs arrive opened)
    with open(path, "rb") as f:
        assert list(inputs.READERS["csv"].events(f, "URL", "TEXT")) == events
        assert not f.closed
    # a truncated gzip CSV keeps what it read and reports the cut
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(data)[:-30])
    tail = per_record(iter_table_events(str(gz)))
    assert outcome(tail[-1]) == "reject:truncated_gzip"
    # an empty file has no records; a header without the columns is a configuration error
    (tmp_path / "empty.csv").write_bytes(b"")
    assert list(iter_table_events(str(tmp_path / "empty.csv"))) == []
    (tmp_path / "other.csv").write_bytes(b"url,text\nhttps://a.example/1.jpg,Hund\n")
    with pytest.raises(ValueError, match="no column"):
        list(iter_table_events(str(tmp_path / "other.csv")))
    # what the csv module cannot parse ends the file as one corrupt_table record
    long = tmp_path / "long.csv"
    long.write_bytes(b"URL,TEXT\nhttps://a.example/1.jpg,Hund\nhttps://a.example/2.jpg," + b"x" * 200 + b"\nhttps://a.example/3.jpg,Maus\n")
    limit = csv.field_size_limit(100)
    try:
        assert [outcome(r) for r in per_record(iter_table_events(str(long)))] == ["pairs", "reject:corrupt_table"]
    finally:
        csv.field_size_limit(limit)


def sample_resources(root) -> annotate.WorkerResources:
    """Annotator's resources over sample metadata (en, de) written at `root`."""
    write_sample_metadata(root, ["en", "de"])
    return annotate.worker_resources(str(root), None, max_loaded=4)


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return sample_resources(tmp_path_factory.mktemp("inputs-meta"))


def test_csv_input_through_stage1_equals_jsonl_and_parquet(tmp_path, resources):
    """run_input end to end: a CSV gives the texts, rejects and stats of the same rows as JSONL
    (events) and Parquet (column chunks)."""
    rows = ROWS + [
        ("https://ex.com/a.jpg", "photo of the dog and the house"),
        ("https://ex.com/b.jpg", "Hund und Katze im Garten"),
        ("https://ex.com/c.jpg", "the cat in the garden, 12"),
        ("ftp://x/y.jpg", "dog"),
        ("https://ex.com/d.jpg", "qwerty zxcvb"),
    ]

    def stage1(name: str, fmt: str):
        path = write_table(tmp_path / name, fmt, rows)
        fmt_seen = inputs.input_format(path)
        assert fmt_seen == fmt
        stage = annotate.Annotator("i", path, resources, batch_size=2, count_only=("no_match",))
        out = pa.Table.from_batches(list(inputs.run_input(stage, path, fmt_seen, "URL", "TEXT")),
                                    schema=annotate.ANNOTATED).to_pylist()
        assert out[-1]["kind"] == "stats"
        body = sorted((tuple((k, v) for k, v in r.items() if k not in ("input_id", "source")) for r in out[:-1]),
                      key=repr)
        stats = {k: v for k, v in stage.stats().items() if k != "input"}
        return body, stats

    want = stage1("t.jsonl", "jsonl")
    assert stage1("t.parquet", "parquet") == want
    assert stage1("t.csv", "csv") == want
    assert stage1("t.csv.gz", "csv") == want
    body, stats = want
    texts = {dict(r)["text"] for r in body if dict(r)["kind"] == "text"}
    assert {"photo of the dog and the house", "Hund und Katze im Garten"} <= texts
    acct = stats["accounting"]
    assert acct["read"]["in"] == len(rows) and all(s["balanced"] for s in acct.values())
    assert acct["extract"]["rejected"]["unsupported_scheme"] == 2
