"""The whole hostile corpus in one curate run (issue 17): damaged gzip members, a truncated WAT,
a corrupt Parquet page, invalid UTF-8, an over-long JSONL line, malformed JSON and CSV rows,
beside good sample WATs. The run must finish, every stage must balance, and every input record
must be accounted for: the job's read stage counts exactly the records the readers see."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.curate_config import CurateConfig
from curation.inputs import EventCounter, base, input_format, iter_input_events
from curation.samples.alt_texts import write_sample
from curation.samples.wat_writer import gzip_member, wat_record_bytes
from jobs.curate import run

PAGE = "https://hostile.example/dir/page.html"


def _members(n: int, first: int = 0) -> list[bytes]:
    return [gzip_member(wat_record_bytes({"page_url": PAGE, "links": [{"url": f"/{i}.jpg", "alt": f"Hund {i}"}]},
                                         index=i)) for i in range(first, first + n)]


def _corpus(d) -> list[str]:
    d.mkdir()
    m = _members(20)
    (d / "garbage.wat.gz").write_bytes(b"".join(m[:10]) + b"\x00garbage\x1f\x8b junk" * 50 + b"".join(m[10:]))
    bad_crc = bytearray(m[7])
    bad_crc[-8] ^= 0xFF  # the CRC-32 of member 7
    (d / "badcrc.wat.gz").write_bytes(b"".join(m[:7]) + bytes(bad_crc) + b"".join(m[8:]))
    whole = b"".join(_members(12, 100))
    (d / "truncated.wat.gz").write_bytes(whole[: len(whole) * 2 // 3])
    n = 3000
    table = pa.table({"URL": [f"https://a.example/{i}.jpg" for i in range(n)],
                      "TEXT": [f"Hund Nummer {i} im Garten" for i in range(n)]})
    path = d / "corrupt-page.parquet"
    pq.write_table(table, path, row_group_size=1000)
    data = bytearray(path.read_bytes())
    meta = pq.ParquetFile(path).metadata.row_group(1).column(1)
    at = meta.dictionary_page_offset or meta.data_page_offset
    data[at: at + 6] = b"\xff" * 6  # "Couldn't deserialize thrift": row group 1 is lost
    path.write_bytes(bytes(data))
    lines = [json.dumps({"URL": f"https://j.example/{i}.jpg", "TEXT": f"Katze {i}"}).encode() for i in range(30)]
    lines[3] = b"{not json"
    lines[5] = b'{"URL": "https://j.example/x.jpg", "TEXT": "\xff\xfe"}'  # invalid UTF-8
    lines[9] = json.dumps({"URL": "https://j.example/long.jpg", "TEXT": "x" * (base.MAX_ROW_BYTES + 10)}).encode()
    lines[11] = b'{"URL": "https://j.example/nokey.jpg"}'
    (d / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rows = ["URL,TEXT"] + [f"https://c.example/{i}.jpg,Vogel {i}" for i in range(25)]
    rows[4] = "https://c.example/short.jpg"  # a row without its text column
    (d / "rows.csv").write_bytes("\n".join(rows).encode() + b"\n\xff\xfe,\xff\n")
    return sorted(str(p) for p in d.iterdir())


@pytest.mark.spark
def test_the_hostile_corpus_runs_balances_and_accounts_for_every_record(spark, tmp_path):
    sample = write_sample(tmp_path / "sample", seed=3, files=2, pages_per_file=5)
    files = [*_corpus(tmp_path / "hostile"), *sample["wat_files"]]
    records = 0
    for f in files:  # what the readers see, file by file
        counter = EventCounter().update(iter_input_events(f, input_format(f), "URL", "TEXT"))
        assert counter.records == (counter.records_with_links + sum(counter.skipped.values())
                                   + sum(counter.record_rejects.values()))
        records += counter.records
    cfg = CurateConfig(inputs=tuple(files), metadata=sample["metadata"], output=str(tmp_path / "out"), t_en=40)
    manifest = run(cfg, spark, progress=lambda *_: None)
    acct = manifest["accounting"]
    assert all(s["balanced"] for s in acct.values()), acct
    assert acct["read"]["in"] == records
    rejected = acct["read"]["rejected"]
    for reason in ("corrupt_gzip", "truncated_gzip", "corrupt_table", "malformed_json", "invalid_utf8",
                   "record_too_large", "missing_keys"):
        assert rejected.get(reason, 0) > 0, (reason, rejected)
    assert rejected["corrupt_table"] >= 1000  # the lost row group, row by row
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["all_stages_balanced"] and manifest["rows"]["curated"] > 0
