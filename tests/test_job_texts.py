"""What the download and sample jobs print (issue 17 item 16): --help names documents that exist
in the repository (it named a DESIGN document that does not), and the sample's summary is
printed once (it was printed twice: a sentence, then the same numbers as JSON)."""

from __future__ import annotations

import os
import re

import pytest

from jobs import download, make_sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _named_files(text: str) -> list[str]:
    return re.findall(r"[\w./-]+\.(?:md|py|json|sh)\b", text)


def _make_sample_help(capsys) -> str:
    with pytest.raises(SystemExit):
        make_sample.main(["--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("job", ["download", "make_sample"])
def test_help_names_only_documents_that_exist(job, capsys):
    text = download.build_parser().format_help() if job == "download" else _make_sample_help(capsys)
    assert "DESIGN" not in text
    named = _named_files(text.split("\n\n", 1)[1])  # past the usage line (its program name is the runner's)
    assert "README.md" in named
    for path in named:
        assert os.path.exists(os.path.join(ROOT, path)), f"{job} --help names {path}, not in the repository"


def test_sample_summary_is_printed_once(tmp_path, capsys):
    summary = make_sample.main(["--out", str(tmp_path), "--files", "1", "--pages", "10", "--languages", "en,de"])
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    assert out.count(f"{summary['records']} records") == 1 and f'"records": {summary["records"]}' not in out
    assert str(tmp_path / "sample.json") in out and (tmp_path / "sample.json").exists()
