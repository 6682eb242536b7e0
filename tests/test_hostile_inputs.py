"""Hostile and mistaken inputs: damage costs only the damaged stretch, and a wrong format or column
name is caught before a run (curation.inputs.check).

Every reader must survive what a crawl or an upload does to files: a gzip member overwritten,
garbage between members, a bad CRC, a cut, a corrupt Parquet page, footer or string, a line of
hundreds of megabytes. Each is counted (records in = out + rejected) and the records around it
are still read; storage I/O errors still raise. The damage is made here, on inputs written by
curation.samples or by the tests' own table writer.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import random
import struct
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import annotate, inputs, storage
from curation.inputs import EventCounter, check_input, iter_table_events, iter_wat_events
from curation.inputs import base as inputs_base
from curation.inputs import check as inputs_check
from curation.inputs.base import open_binary
from curation.samples.wat_writer import gzip_member, wat_record_bytes, write_wat
from tests.conftest import shared_file
from tests.test_inputs import sample_resources, write_table
from tests.test_wat import PAGE, assert_accounted, outcome, pairs_of, per_record


def _balanced(counter: EventCounter) -> None:
    assert counter.records == counter.records_with_links + sum(counter.skipped.values()) + sum(counter.record_rejects.values())


def wat_members(n: int = 20) -> list[bytes]:
    """n gzip members of one WAT record each, record i with one image link /i.jpg."""
    return [gzip_member(wat_record_bytes({"page_url": PAGE, "links": [{"url": f"/{i}.jpg", "alt": f"Hund {i}"}]},
                                         index=i)) for i in range(n)]


def read_wat(data: bytes) -> tuple[list[int], EventCounter, list[list]]:
    """The member numbers whose pair was read (in order), the counts, the events per record."""
    events = list(iter_wat_events(io.BytesIO(data), "hostile"))
    records = per_record(events)
    assert_accounted(records)
    counter = EventCounter().update(events)
    _balanced(counter)
    got = [int(p["url"].rsplit("/", 1)[1].split(".")[0]) for p in pairs_of(events)]
    return got, counter, records


# --------------------------------------------------------------------------- gzip members


def test_garbage_between_members_costs_one_reject():
    members = wat_members()
    data = b"".join(members[:10]) + b"this is no gzip member " * 8 + b"".join(members[10:])
    got, counter, records = read_wat(data)
    assert got == list(range(20))  # every member after the garbage is read
    assert counter.records == 21 and counter.record_rejects == {"corrupt_gzip": 1}
    assert outcome(records[10]) == "reject:corrupt_gzip"
    assert "skipped" in records[10][0][1][1]


def test_bad_crc_member_is_one_reject_and_no_phantom():
    members = wat_members()
    bad = bytearray(members[10])
    bad[-8] ^= 0xFF  # the CRC32 of the trailer
    got, counter, records = read_wat(b"".join(members[:10]) + bytes(bad) + b"".join(members[11:]))
    assert got == [i for i in range(20) if i != 10]  # the damaged member's record is not yielded as well
    assert counter.records == 20 and counter.record_rejects == {"corrupt_gzip": 1}
    assert outcome(records[10]) == "reject:corrupt_gzip"


def test_corrupt_member_that_reads_on_into_the_next_members():
    """A damaged block header that declares a stored block swallows the members behind it before
    zlib fails: the search for the next member starts right after the damaged one's start."""
    members = wat_members()
    header, rest = members[5][:10], members[5][10:]
    length = len(rest) + len(members[6]) + len(members[7]) + 5
    damaged = header + b"\x00" + struct.pack("<HH", length, length ^ 0xFFFF) + rest
    got, counter, _ = read_wat(b"".join(members[:5]) + damaged + b"".join(members[6:]))
    assert got == [i for i in range(20) if i != 5]
    assert counter.record_rejects == {"corrupt_gzip": 1}


def test_damaged_last_member_that_runs_to_the_end_is_no_truncation():
    members = wat_members(4)
    header, rest = members[2][:10], members[2][10:]
    length = len(rest) + len(members[3]) + 100  # past the end of the input
    damaged = header + b"\x00" + struct.pack("<HH", length, length ^ 0xFFFF) + rest
    got, counter, _ = read_wat(b"".join(members[:2]) + damaged + members[3])
    assert got == [0, 1, 3] and counter.record_rejects == {"corrupt_gzip": 1}


def test_random_damage_keeps_every_intact_member():
    """Overwrite (one to three places), insert or cut at random: no reader error, no pair invented
    or read twice, every member whose bytes are untouched read, and, while the last member is
    intact, one corrupt_gzip per damaged member at most and no other reject. (A damaged last
    member cannot be told from a cut one: what it decompressed is yielded, unchecked.)"""
    members = wat_members(12)
    bounds = [0]
    for m in members:
        bounds.append(bounds[-1] + len(m))
    data = b"".join(members)
    rng = random.Random(17)
    for trial in range(300):
        how = rng.choice(["overwrite", "overwrite", "insert", "cut"])
        damaged, touched = bytearray(data), set()
        for _ in range(rng.choice([1, 2, 3]) if how == "overwrite" else 1):
            start = rng.randrange(len(data))
            length = min(rng.choice([1, 3, 20, 200, 900, 3000]), len(data) - start)
            noise = bytes(rng.randrange(256) for _ in range(length))
            if how == "overwrite":
                damaged[start: start + length] = noise
            elif how == "insert":
                damaged[start:start] = noise
            else:
                del damaged[start:]
            end = start + (length if how == "overwrite" else 0)
            touched |= {i for i in range(12) if bounds[i] <= end and start < bounds[i + 1] + (how != "overwrite")}
            if how == "cut":
                touched |= {i for i in range(12) if bounds[i] >= start}
        got, counter, _ = read_wat(bytes(damaged))
        intact = set(range(12)) - touched
        where = (trial, how, sorted(touched), got, dict(counter.record_rejects))
        assert intact <= set(got), where
        assert len(got) == len(set(got)) and set(got) <= set(range(12)), where
        if how == "cut":
            assert set(counter.record_rejects) <= {"truncated_gzip"} and sum(counter.record_rejects.values()) <= 1, where
        elif 11 not in touched:
            assert set(counter.record_rejects) <= {"corrupt_gzip"}, where
            assert 0 < counter.record_rejects["corrupt_gzip"] <= len(touched) or set(got) == set(range(12)), where


def test_damaged_first_member_header_is_still_gzip(tmp_path):
    """An input whose very first bytes are damaged is still read as gzip (from the member after)."""
    members = wat_members(5)
    damaged = b"\x00\x00" + members[0][2:] + b"".join(members[1:])
    got, counter, _ = read_wat(damaged)
    assert got == [1, 2, 3, 4] and counter.record_rejects == {"corrupt_gzip": 1}
    path = tmp_path / "damaged.wat.gz"
    path.write_bytes(damaged)
    assert check_input(str(path)) == "wat"  # the preflight sees gzip too
    with open_binary(io.BytesIO(b"WARC/1.0\r\n" + members[0])) as stream:  # a plain WARC holding gzip bytes stays plain
        assert stream.read(8) == b"WARC/1.0"


def test_resyncing_reader_gives_the_bytes_stdlib_gives():
    """The healthy path: every gzip layout gzip.decompress reads (empty members, a file name, zero
    padding, one member across many reads) reads the same, in any read size."""
    named = io.BytesIO()
    with gzip.GzipFile(filename="name.txt", mode="wb", fileobj=named, mtime=0) as g:
        g.write(b"with a file name in the header\n")
    rng = random.Random(3)
    big = bytes(rng.randrange(256) for _ in range(300_000))  # incompressible: spans several reads
    parts = [gzip.compress(b""), gzip.compress(b"a\nb\n"), named.getvalue(), gzip.compress(big), gzip.compress(b"end\n")]
    data = b"".join(parts) + b"\0" * 1000
    with open_binary(io.BytesIO(data)) as stream:
        assert stream.read() == gzip.decompress(b"".join(parts))
    with open_binary(io.BytesIO(data)) as stream:
        got = b"".join(iter(lambda: stream.read(777), b""))
    assert got == gzip.decompress(b"".join(parts))


def test_large_member_streams_and_damage_after_it_costs_the_rest(monkeypatch):
    """A member above MAX_HELD_BYTES is not held whole; damage in it after that loses its rest."""
    monkeypatch.setattr(inputs_base, "MAX_HELD_BYTES", 4096)
    rng = random.Random(1)
    lines = b"".join(json.dumps({"URL": f"https://a.example/{i}.jpg", "TEXT": f"Hund {rng.random()}"}).encode() + b"\n"
                     for i in range(5000))
    member = bytearray(gzip.compress(lines))
    assert len(member) > 3 * inputs_base._FEED_BYTES
    member[-8] ^= 0xFF  # found at the member's end, after most of its output has streamed on
    data = bytes(member) + gzip.compress(json.dumps({"URL": "https://a.example/last.jpg", "TEXT": "Katze"}).encode())
    events = list(iter_table_events(io.BytesIO(data), fmt="jsonl"))
    counter = EventCounter().update(events)
    _balanced(counter)
    assert counter.record_rejects == {"corrupt_gzip": 1}
    assert 2500 < counter.pairs - 1 < 5000 and pairs_of(events)[-1]["text"] == "Katze"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_damaged_member_of_a_table_costs_only_its_rows(tmp_path, fmt):
    rows = [(f"https://a.example/{i}.jpg", f"Hund {i}") for i in range(30)]
    whole = open(write_table(tmp_path / f"t.{fmt}", fmt, rows), "rb").read().splitlines(keepends=True)
    head, body = (whole[:1], whole[1:]) if fmt == "csv" else ([], whole)
    members = [gzip.compress(b"".join(head + body[:10]))] + [gzip.compress(b"".join(body[i:i + 10])) for i in (10, 20)]
    bad = bytearray(members[1])
    bad[len(bad) // 2] ^= 0x55
    path = tmp_path / f"t.{fmt}.gz"
    path.write_bytes(members[0] + bytes(bad) + members[2])
    events = list(iter_table_events(str(path)))
    counter = EventCounter().update(events)
    _balanced(counter)
    assert counter.records == 21 and counter.record_rejects == {"corrupt_gzip": 1}
    assert [p["text"] for p in pairs_of(events)] == [f"Hund {i}" for i in (*range(10), *range(20, 30))]


# --------------------------------------------------------------------------- over-long lines


class _LongLine(io.RawIOBase):
    """`before`, then one line of `size` filler bytes made up as it is read (never held), then `after`."""

    def __init__(self, before: bytes, prefix: bytes, size: int, after: bytes):
        self.parts = [before, prefix]
        self.filler = size - len(prefix)
        self.after = after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.parts and not self.parts[0]:
            self.parts.pop(0)
        if self.parts:
            data, self.parts[0] = self.parts[0][: len(buffer)], self.parts[0][len(buffer):]
        elif self.filler:
            data = b"x" * min(len(buffer), self.filler)
            self.filler -= len(data)
        else:
            data, self.after = self.after[: len(buffer)], self.after[len(buffer):]
        buffer[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_overlong_line_is_rejected_without_holding_it(fmt):
    size = 64 << 20  # eight times MAX_ROW_BYTES
    if fmt == "jsonl":
        row = b'{"URL": "https://a.example/%d.jpg", "TEXT": "Hund"}\n'
        before, prefix = row % 1, b'{"URL": "https://a.example/2.jpg", "TEXT": "'
        after = b'"}\n' + row % 3
    else:
        before, prefix = b"URL,TEXT\nhttps://a.example/1.jpg,Hund\n", b"https://a.example/2.jpg,"
        after = b"\nhttps://a.example/3.jpg,Hund\n"
    tracemalloc.start()
    try:
        events = list(inputs.READERS[fmt].events(_LongLine(before, prefix, size, after), "URL", "TEXT"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * inputs_base.MAX_ROW_BYTES, f"{peak >> 20} MiB held for one line"
    records = per_record(events)
    assert [outcome(r) for r in records] == ["pairs", "reject:record_too_large", "pairs"]
    line = size + after.index(b"\n") + 1
    assert f"a line of {line} " in records[1][0][1][1]


# --------------------------------------------------------------------------- Parquet


def _three_row_groups(path, compression: str = "snappy") -> bytes:
    n = 3000
    table = pa.table({"URL": [f"https://a.example/{i}.jpg" for i in range(n)],
                      "TEXT": [f"Hund Nummer {i} im Garten" for i in range(n)]})
    pq.write_table(table, path, row_group_size=1000, compression=compression)
    return path.read_bytes()


def _page_offset(data: bytes, group: int, column: int) -> int:
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(group).column(column)
    return meta.dictionary_page_offset or meta.data_page_offset


def _both_paths(path: str) -> tuple[EventCounter, list[str]]:
    """The counts of the event path, checked against the column path's (records, pairs, rejects)."""
    events = list(iter_table_events(path))
    counter = EventCounter().update(events)
    _balanced(counter)
    chunks = list(inputs.READERS["parquet"].pair_chunks(path, "URL", "TEXT", 512))
    assert sum(c.records for c in chunks) == counter.records
    assert sorted(r for c in chunks for r in c.rejects) == sorted(v for k, v in events if k == "reject")
    assert [row for c in chunks for row in c.rows()] == pairs_of(events)
    return counter, [p["text"] for p in pairs_of(events)]


@pytest.mark.parametrize("damage", ["thrift", "snappy"])
def test_corrupt_page_costs_its_row_group(tmp_path, damage):
    path = tmp_path / "t.parquet"
    data = bytearray(_three_row_groups(path))
    at = _page_offset(bytes(data), 1, 1)
    if damage == "thrift":  # the page header: "Couldn't deserialize thrift"
        data[at: at + 6] = b"\xff" * 6
    else:  # the compressed page: "Corrupt snappy compressed data"
        data[at + 40: at + 80] = b"\x13" * 40
    path.write_bytes(bytes(data))
    counter, texts = _both_paths(str(path))
    assert counter.records == 3000 and counter.record_rejects == {"corrupt_table": 1000}
    assert texts == [f"Hund Nummer {i} im Garten" for i in (*range(1000), *range(2000, 3000))]


def test_unreadable_footer_is_one_record(tmp_path):
    path = tmp_path / "t.parquet"
    data = bytearray(_three_row_groups(path))
    (footer_length,) = struct.unpack("<I", data[-8:-4])
    data[-8 - footer_length: -8 - footer_length + 12] = b"\xff" * 12  # "Couldn't deserialize thrift"
    path.write_bytes(bytes(data))
    counter, texts = _both_paths(str(path))
    assert counter.records == 1 and counter.record_rejects == {"corrupt_table": 1} and not texts
    path.write_bytes(_three_row_groups(path)[:-100])  # cut
    assert _both_paths(str(path))[0].record_rejects == {"corrupt_table": 1}


def test_invalid_utf8_strings_cost_their_rows(tmp_path):
    """Parquet writers do not check UTF-8; such a value rejects its row as invalid_utf8 on both paths."""
    urls = [b"https://a.example/1.jpg", b"https://a.example/\xff.jpg", b"https://a.example/3.jpg", b"https://a.example/4.jpg"]
    texts = [b"Hund", b"Katze", b"M\xc3", None]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"URL": pa.array(urls, pa.binary()).view(pa.string()),
                             "TEXT": pa.array(texts, pa.binary()).view(pa.string())}), path)
    counter, got = _both_paths(str(path))
    assert got == ["Hund"]
    assert counter.records == 4 and counter.record_rejects == {"invalid_utf8": 2}
    assert counter.text_rejects == {"empty_text": 1}
    rejects = [r[0][1] for r in per_record(iter_table_events(str(path))) if r[0][0] == "reject"]
    assert rejects[0] == ("invalid_utf8", "https://a.example/\\xff.jpg")


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return sample_resources(tmp_path_factory.mktemp("hostile-meta"))


def test_damaged_parquet_through_annotator_balances(tmp_path, resources):
    path = tmp_path / "t.parquet"
    data = bytearray(_three_row_groups(path))
    at = _page_offset(bytes(data), 2, 0)
    data[at: at + 6] = b"\xff" * 6
    path.write_bytes(bytes(data))
    stats = []
    for run in ("columns", "events"):
        stage = annotate.Annotator("i", str(path), resources, batch_size=256, count_only=("no_match",))
        if run == "columns":
            batches = list(inputs.run_input(stage, str(path), "parquet", "URL", "TEXT"))
        else:
            batches = list(stage.run(inputs.iter_input_events(str(path), "parquet")))
        assert pa.Table.from_batches(batches).column("kind").to_pylist()[-1] == "stats"
        stats.append({k: v for k, v in stage.stats().items() if k != "input"})
    assert stats[0] == stats[1]
    acct = stats[0]["accounting"]
    assert acct["read"]["in"] == 3000 and acct["read"]["rejected"] == {"corrupt_table": 1000}
    assert all(s["balanced"] for s in acct.values())


def test_storage_errors_still_raise(tmp_path, monkeypatch):
    """An OSError with an errno is the storage's, not bad content: it is not counted, it raises."""
    path = tmp_path / "t.parquet"
    _three_row_groups(path)

    def failing(self, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", failing)
    with pytest.raises(OSError, match="Input/output"):
        list(iter_table_events(str(path)))
    with pytest.raises(OSError, match="Input/output"):
        list(inputs.READERS["parquet"].pair_chunks(str(path), "URL", "TEXT"))

    class Failing(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise OSError(errno.ECONNRESET, "connection reset")

    for fmt in ("wat", "jsonl", "csv"):
        with pytest.raises(OSError, match="connection reset"):
            list(inputs.READERS[fmt].events(Failing(), "URL", "TEXT"))
    gz = gzip.compress(b'{"URL": "https://a.example/1.jpg", "TEXT": "Hund"}\n' * 10_000)

    class FailingLater(io.RawIOBase):  # a gzip body whose connection breaks part way
        def __init__(self):
            self.left = io.BytesIO(gz[: len(gz) // 2])

        def readable(self):
            return True

        def readinto(self, buffer):
            data = self.left.read(len(buffer))
            if not data:
                raise OSError(errno.ECONNRESET, "connection reset")
            buffer[: len(data)] = data
            return len(data)

    with pytest.raises(OSError, match="connection reset"):
        list(inputs.READERS["jsonl"].events(FailingLater(), "URL", "TEXT"))


# --------------------------------------------------------------------------- check_input


def test_check_input_accepts_what_the_readers_read(tmp_path):
    rows = [("https://a.example/1.jpg", "Hund")]
    for name, fmt in (("t.parquet", "parquet"), ("t.jsonl", "jsonl"), ("t.jsonl.gz", "jsonl"), ("t.csv", "csv"),
                      ("t.csv.gz", "csv")):
        path = write_table(tmp_path / name, fmt, rows, "image_url", "caption", extra=True)
        assert check_input(path, "auto", "image_url", "caption") == fmt
        assert check_input(path, fmt, "image_url", "caption") == fmt
    write_wat(tmp_path / "w.wat.gz", [{"page_url": PAGE, "links": [{"url": "/a.jpg", "alt": "Hund"}]}])
    assert check_input(str(tmp_path / "w.wat.gz"), "auto") == "wat"
    (tmp_path / "w").write_bytes(gzip.decompress((tmp_path / "w.wat.gz").read_bytes()))
    assert check_input(str(tmp_path / "w"), "auto") == "wat"  # no extension: a WAT, here uncompressed
    (tmp_path / "empty.csv").write_bytes(b"")
    assert check_input(str(tmp_path / "empty.csv")) == "csv"  # no records, nothing to contradict
    (tmp_path / "empty.wat.gz").write_bytes(gzip.compress(b""))
    assert check_input(str(tmp_path / "empty.wat.gz")) == "wat"
    damaged = bytearray((tmp_path / "w.wat.gz").read_bytes())
    damaged[12:30] = b"\xff" * 18  # the first member: bad content, which the reader counts
    (tmp_path / "damaged.wat.gz").write_bytes(bytes(damaged))
    assert check_input(str(tmp_path / "damaged.wat.gz")) == "wat"
    assert check_input(str(shared_file("web/alt-text-1000.parquet"))) == "parquet"
    assert check_input(str(shared_file("web/whirlwind.warc.wat.gz"))) == "wat"
    assert check_input(str(shared_file("web/cc-2020-34-sample.warc.gz")), "wat") == "wat"


def _one_line_error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_check_input_names_the_columns_there_are(tmp_path):
    rows = [("https://a.example/1.jpg", "Hund")]
    for name, fmt in (("x.parquet", "parquet"), ("x.jsonl", "jsonl"), ("x.jsonl.gz", "jsonl"), ("x.csv", "csv"),
                      ("x.csv.gz", "csv")):
        path = write_table(tmp_path / name, fmt, rows, "url", "caption")
        message = _one_line_error(lambda path=path: check_input(path, "auto", "URL", "caption"))
        assert message == f"input {path} has no column 'URL' (columns: caption, url); set --url-col/--text-col"
        message = _one_line_error(lambda path=path: check_input(path))
        assert "no columns 'URL' and 'TEXT' (columns: caption, url)" in message
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(100)) + "\n")
    assert "(columns: c0, c1," in _one_line_error(lambda: check_input(str(wide)))


@pytest.mark.parametrize("name, fmt, content, holds, hint", [
    ("a.csv", "wat", "csv", "CSV or other text", "set --input-format csv"),
    ("a.wat.gz", "auto", "csv.gz", "gzip-compressed CSV or other text", "set --input-format csv"),
    ("a.jsonl", "auto", "parquet", "a Parquet file", "set --input-format parquet"),
    ("a.parquet", "auto", "jsonl", "JSON lines", "set --input-format jsonl"),
    ("a.parquet", "auto", "csv.gz", "gzip-compressed CSV or other text", "set --input-format csv"),
    ("a.csv", "auto", "wat", "gzip-compressed WARC records", "set --input-format wat"),
    ("a.csv", "auto", "jsonl", "JSON lines", "set --input-format jsonl"),
    ("a.jsonl", "jsonl", "json", "a JSON document, not one object per line", "no input format reads it"),
    ("a.wat.gz", "auto", "zstd", "zstd-compressed data", "no input format reads it"),
    ("a.wat.gz", "auto", "gzip-binary", "gzip-compressed binary data", "no input format reads it"),
])
def test_check_input_names_the_kind_of_content(tmp_path, name, fmt, content, holds, hint):
    rows = [("https://a.example/1.jpg", "Hund")]
    path = tmp_path / name
    if content in ("csv", "csv.gz", "jsonl", "parquet"):
        write_table(tmp_path / f"src.{content}", content.split(".")[0], rows)
        path.write_bytes((tmp_path / f"src.{content}").read_bytes())
    elif content == "wat":
        write_wat(path, [{"page_url": PAGE}])
    elif content == "json":
        path.write_text(json.dumps([{"URL": "https://a.example/1.jpg", "TEXT": "Hund"}], indent=1))
    elif content == "zstd":
        path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(256)))
    else:
        path.write_bytes(gzip.compress(bytes(range(256)) * 4))
    message = _one_line_error(lambda: check_input(str(path), fmt))
    read_as = "by its name" if fmt == "auto" else f"(--input-format {fmt})"
    assert message.startswith(f"input {path} is read as {inputs.input_format(str(path), fmt)} {read_as} but holds {holds}")
    assert message.endswith(hint)


def test_check_input_reads_only_the_head_and_the_footer_on_s3(s3_bucket, tmp_path, monkeypatch):
    rng = random.Random(5)
    n = 100_000
    table = pa.table({"URL": [f"https://a.example/{rng.random()}.jpg" for _ in range(n)],
                      "TEXT": [f"Hund {rng.random()} {rng.random()}" for _ in range(n)]})
    pq.write_table(table, tmp_path / "big.parquet", compression="none")
    with open(tmp_path / "big.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["URL", "TEXT"])
        writer.writerows(zip(table.column("URL").to_pylist(), table.column("TEXT").to_pylist(), strict=True))
    fetched = []
    get = storage._S3RangeReader._get

    def counting(self, start, end_inclusive):
        data = get(self, start, end_inclusive)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(storage._S3RangeReader, "_get", counting)
    for name in ("big.parquet", "big.csv"):
        uri = f"s3://{s3_bucket}/in/{name}"
        storage.write_bytes(uri, (tmp_path / name).read_bytes())
        assert (tmp_path / name).stat().st_size > 4 << 20
        fetched.clear()
        assert check_input(uri) == name.split(".")[1]
        assert sum(fetched) <= inputs_check.HEAD_BYTES + (128 << 10), fetched
        fetched.clear()
        assert "has no column 'url'" in _one_line_error(lambda uri=uri: check_input(uri, "auto", "url", "TEXT"))
        assert sum(fetched) <= inputs_check.HEAD_BYTES + (128 << 10), fetched
    uri = f"s3://{s3_bucket}/in/big.csv"
    assert "holds CSV or other text" in _one_line_error(lambda: check_input(uri, "parquet"))
    with pytest.raises(FileNotFoundError):
        check_input(f"s3://{s3_bucket}/in/missing.csv")
