"""--output is never someone else's directory: the one replacement rule of curation.layout, as
the three jobs apply it before Spark starts, and symlinked outputs that keep their link."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from curation import layout, storage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def _user_dir(path):
    """A directory a user keeps things in: notes and a source tree."""
    path.mkdir()
    (path / "NOTES.txt").write_text("my notes\n")
    (path / "src").mkdir()
    (path / "src" / "main.py").write_text("print('hi')\n")
    return path


def _snapshot(path) -> dict:
    return {os.path.relpath(os.path.join(r, f), path): open(os.path.join(r, f), "rb").read()
            for r, _d, files in os.walk(path) for f in files}


def _published(path, job: str, extra=()):
    """An output as the job publishes it: its entries, its manifest and _SUCCESS."""
    with storage.publish(str(path)) as staging:
        os.makedirs(staging)
        with open(os.path.join(staging, layout.JOB_MANIFEST), "w") as f:
            json.dump({"job": job}, f)
        for name in extra:
            os.makedirs(os.path.join(staging, name))
    return path


CURATE = layout.CurateOutput.LAYOUT


def test_new_empty_and_own_outputs_may_be_written(tmp_path):
    layout.check_output(str(tmp_path / "new"), CURATE)
    (tmp_path / "empty").mkdir()
    layout.check_output(str(tmp_path / "empty"), CURATE)
    layout.check_output(str(_published(tmp_path / "old", "curate", ["matched", "_state"])), CURATE)
    started = tmp_path / "images"
    started.mkdir()
    (started / layout.ImagesOutput.PLAN).write_text(json.dumps({"num_shards": 2}))
    layout.check_output(str(started), layout.ImagesOutput.LAYOUT)  # a download to resume in place


@pytest.mark.parametrize("case", ["user_dir", "file", "other_job", "foreign_entry", "input_inside"])
def test_anything_else_is_refused_in_one_line(tmp_path, case):
    inputs = []
    if case == "user_dir":
        out = _user_dir(tmp_path / "out")
        match = "not an earlier curate output"
    elif case == "file":
        out = tmp_path / "out"
        out.write_text("x")
        match = "is a file"
    elif case == "other_job":
        out = _published(tmp_path / "out", "download")
        match = "not an earlier curate output"
    elif case == "foreign_entry":
        out = _published(tmp_path / "out", "curate", ["matched", "images"])
        match = "also holds images"
    else:
        out = _published(tmp_path / "out", "curate", ["matched"])
        inputs = [str(out / "matched" / "x.parquet")]
        match = "lies inside --output"
    before = _snapshot(out) if out.is_dir() else None
    with pytest.raises(layout.OutputRefused, match=match) as e:
        layout.check_output(str(out), CURATE, inputs)
    assert "\n" not in str(e.value)
    if before is not None:
        assert _snapshot(out) == before


def test_metadata_and_download_outputs_are_recognised_by_their_own_markers(tmp_path):
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / layout.MetadataOutput.MANIFEST).write_text(json.dumps({"format_version": 1, "languages": {}}))
    (meta / "automata").mkdir()
    layout.check_output(str(meta), layout.MetadataOutput.LAYOUT)
    with pytest.raises(layout.OutputRefused):
        layout.check_output(str(meta), CURATE)
    with pytest.raises(layout.OutputRefused):
        layout.check_output(str(meta), layout.ImagesOutput.LAYOUT)
    with pytest.raises(layout.OutputRefused):
        layout.check_output(str(_published(tmp_path / "cur", "curate")), layout.ImagesOutput.LAYOUT)


def test_a_symlinked_output_keeps_its_link(tmp_path):
    target = _published(tmp_path / "target", "curate", ["old_part"])
    link = tmp_path / "out"
    link.symlink_to(target, target_is_directory=True)
    with storage.publish(str(link)) as staging:
        os.makedirs(os.path.join(staging, "new_part"))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(os.listdir(target)) == [storage.SUCCESS_MARKER, "new_part"]
    assert sorted(p for p in os.listdir(tmp_path) if not p.startswith(".")) == ["out", "target"]


def _job(args, cwd=None):
    """A job run as a user runs it, with a Java that cannot start: a refusal must come before Spark."""
    env = {**os.environ, "JAVA_HOME": "/nonexistent-java", "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def _assert_refused(res, job):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{job}: error:"), res.stderr


def test_the_three_jobs_refuse_a_user_directory_before_spark(tmp_path):
    wat = tmp_path / "in.wat.gz"
    wat.write_bytes(b"")
    out = _user_dir(tmp_path / "out")
    before = _snapshot(out)
    curate = os.path.join(ROOT, "jobs", "curate.py")
    _assert_refused(_job([curate, "--input", str(wat), "--metadata", str(tmp_path / "meta"), "--output", str(out)]),
                    "curate")
    _assert_refused(_job([os.path.join(ROOT, "jobs", "build_metadata.py"), "--output", str(out),
                          "--wikipedia", os.path.join(SHARED, "wikipedia"), "--wordnet"]), "build_metadata")
    _assert_refused(_job([os.path.join(ROOT, "jobs", "download.py"), "--input", str(tmp_path / "curated"),
                          "--output", str(out)]), "download")
    assert _snapshot(out) == before


def test_curate_refuses_the_working_directory_and_an_input_inside_its_output(tmp_path):
    work = _user_dir(tmp_path / "work")
    (work / "in.wat.gz").write_bytes(b"")
    before = _snapshot(work)
    curate = os.path.join(ROOT, "jobs", "curate.py")
    _assert_refused(_job([curate, "--input", "in.wat.gz", "--metadata", "meta", "--output", "."], cwd=work), "curate")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "in.wat.gz").write_bytes(b"")  # once the only entry, the directory would count as replaceable
    res = _job([curate, "--input", str(empty / "in.wat.gz"), "--metadata", "meta", "--output", str(empty)])
    _assert_refused(res, "curate")
    assert "lies inside --output" in res.stderr
    assert _snapshot(work) == before and (empty / "in.wat.gz").exists()
