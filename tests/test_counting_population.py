"""What is counted (issue 14 item 6): an image's identical texts once (the project) or every
record (MetaCLIP's reference), on real local Spark over the built-in sample."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest

from curation import grouping, storage
from curation.curate_config import CurateConfig
from curation.layout import CurateOutput
from curation.samples.alt_texts import write_sample
from jobs.curate import run, state_root

pytestmark = pytest.mark.spark


def _counts(out) -> Counter:
    c = Counter()
    for f in storage.list_files(CurateOutput(str(out)).counts):
        for r in pq.read_table(f).to_pylist():
            c[(r["lang"], r["entry_id"])] += r["count"]
    return c


def _entries(rows) -> Counter:
    c = Counter()
    for lang, ids in rows:
        for e in ids or ():
            c[(lang, e)] += 1
    return c


def test_identical_texts_count_once_or_every_record(spark, tmp_path):
    sample = write_sample(tmp_path / "sample", seed=5, files=3, pages_per_file=20)
    outs = {}
    for how in ("once", "every"):
        cfg = CurateConfig(inputs=tuple(sample["wat_files"]), metadata=sample["metadata"],
                           output=str(tmp_path / how), t_en=6, count_identical_texts=how)
        outs[how] = (cfg, run(cfg, spark, progress=lambda *_: None))
    (cfg_once, once), (cfg_every, every) = outs["once"], outs["every"]
    assert once["accounting"]["group"]["rejected"].get("duplicate_text", 0) > 0  # the sample repeats texts

    # once: the texts of matched/; every: every record stage 1 stored (duplicates included)
    matched = [(t["lang"], t["entry_ids"]) for f in storage.list_files(CurateOutput(cfg_once.output).matched)
               for row in pq.read_table(f).to_pylist() for t in row["texts"]]
    state = storage.join(state_root(cfg_every), every["stage1_fingerprint"])
    records = []
    for f in storage.list_files(state):
        if f.endswith(grouping.TEXTS_FILE):
            t = grouping.read_state_texts(f)
            records += list(zip(t.column("lang").to_pylist(), t.column("entry_ids").to_pylist(), strict=True))
    assert _counts(cfg_once.output) == _entries(matched)
    assert _counts(cfg_every.output) == _entries(records)
    assert _counts(cfg_every.output) != _counts(cfg_once.output)
    # matched/ and the accounting are the same either way: only counting changes
    assert once["rows"]["matched_texts"] == every["rows"]["matched_texts"]
    assert once["accounting"]["group"] == every["accounting"]["group"]


def test_count_identical_texts_rejects_unknown_values():
    with pytest.raises(ValueError, match="count_identical_texts"):
        CurateConfig(count_identical_texts="twice")
