"""The curate job's command line, config file, output lock and the infra wrappers (no Spark session)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess

import pytest

from curation.balance import T_EN_CLIP400M, T_EN_METACLIP2
from curation.curate_config import CurateConfig, add_arguments, config_from_args
from curation.grouping import uuid_range
from curation.runs import output_lock
from curation.storage import expand as expand_inputs
from jobs.curate import n_files, reject_chunks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_defaults_are_the_paper_and_flags_override_a_json_file(tmp_path):
    assert CurateConfig().t_en == T_EN_METACLIP2 and CurateConfig().min_lid_prob == 0.0
    assert _parse(["--clip400m"]).t_en == T_EN_CLIP400M
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"t_en": 500, "seed": 3, "inputs": "a.wat.gz", "url_col": "url"}))
    cfg = _parse(["--config", str(path), "--seed", "4", "-i", "b.wat.gz", "--no-incremental", "--conf", "k=v"])
    assert (cfg.t_en, cfg.seed, cfg.inputs, cfg.url_col, cfg.incremental) == (500, 4, ("b.wat.gz",), "url", False)
    assert cfg.extra_spark_conf == {"k": "v"}
    assert CurateConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="disagree"):
        _parse(["--clip400m", "--t-en", "5"])
    with pytest.raises(ValueError, match="unknown"):
        CurateConfig.from_dict({"t_enn": 1})
    with pytest.raises(ValueError):
        CurateConfig(t_en=0)
    with pytest.raises(ValueError, match="lacks"):
        CurateConfig().validate_for_run()


def test_example_config_loads():
    cfg = CurateConfig.from_json(os.path.join(ROOT, "infra", "curate.json"))
    assert cfg.t_en == T_EN_METACLIP2 and cfg.inputs and cfg.metadata.startswith("s3://")
    # the way infra/submit.sh and cron-curate.sh pass it: --config plus a few flags
    cfg = _parse(["--config", os.path.join(ROOT, "infra", "curate.json"), "--t-en", "20000", "--conf", "a=b"])
    assert (cfg.t_en, cfg.partitions, cfg.input_format) == (20000, 0, "wat")
    assert cfg.extra_spark_conf == {"a": "b"} and cfg.cache_dir == "/mnt/local/worldclip-cache"
    cfg.validate_for_run()


def test_every_flag_and_the_config_file_rules(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_comment": "note", "inputs": ["f1", "f2"], "t_en": 900, "incremental": False,
                                "lid_model": "m.ftz", "extra_spark_conf": {"a": "file", "b": "file"}}))
    cfg = _parse(["--config", str(path), "--conf", "b=flag", "--conf", "c=x=y"])
    assert cfg.inputs == ("f1", "f2") and cfg.t_en == 900 and cfg.incremental is False
    assert cfg.extra_spark_conf == {"a": "file", "b": "flag", "c": "x=y"}  # --conf merges over the file
    cfg = _parse(["--config", str(path), "-i", "x", "--input", "y", "--incremental", "--lid-model", "none",
                  "--metadata", "m", "--output", "o", "--input-format", "parquet", "--url-col", "u",
                  "--text-col", "t", "--en-lang", "de", "--min-lid-prob", "0.5", "--master", "local[2]",
                  "--partitions", "3", "--batch-size", "5",
                  "--max-loaded-automata", "7", "--rows-per-file", "8", "--cache-dir", "c", "--fail-after", "stage1",
                  "--set", "sampled_reasons=no_match"])
    assert cfg == CurateConfig(inputs=("x", "y"), metadata="m", output="o", input_format="parquet", url_col="u",
                               text_col="t", t_en=900, en_lang="de", min_lid_prob=0.5, lid_model=None,
                               master="local[2]", partitions=3, batch_size=5,
                               max_loaded_automata=7, rows_per_file=8,
                               sampled_reasons=("no_match",), incremental=True, cache_dir="c",
                               fail_after="stage1", extra_spark_conf={"a": "file", "b": "file"})
    # the same fields under a "curate" key of a shared file
    (tmp_path / "all.json").write_text(json.dumps({"curate": {"t_en": 7}, "download": {"threads": 1}}))
    assert _parse(["--config", str(tmp_path / "all.json")]).t_en == 7


def test_clip400m_against_t_en_from_flags_set_and_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"t_en": 500}))
    assert _parse(["--config", str(path), "--clip400m"]).t_en == T_EN_CLIP400M  # the flag beats the file
    assert _parse(["--clip400m", "--t-en", str(T_EN_CLIP400M)]).t_en == T_EN_CLIP400M
    with pytest.raises(ValueError, match="disagree"):
        _parse(["--clip400m", "--set", "t_en=5"])
    with pytest.raises(ValueError, match="disagree"):
        _parse(["--t-en", "5", "--clip400m"])


@pytest.mark.parametrize("doc, match", [
    ({"t_en": "170000"}, "expected int"),
    ({"incremental": "no"}, "expected bool"),
    ({"inputs": ["a", 1]}, "expected list of str"),
    ({"extra_spark_conf": ["a=b"]}, "expected object"),
    ({"input_format": "xml"}, "input_format must be one of"),
    ({"t_enn": 1}, "unknown curate config keys"),
])
def test_bad_config_files_name_the_file(tmp_path, doc, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match) as e:
        _parse(["--config", str(path)])
    assert str(path) in str(e.value)


def test_bad_flags_are_argparse_errors_and_help_lists_every_flag(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv in (["--conf", "novalue"], ["--t-en", "many"], ["--inputs", "x"], ["--count-only-reasons", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert "KEY=VALUE" in capsys.readouterr().err
    text = parser.format_help()
    for flag in ("--config FILE", "--input PATH_OR_GLOB, -i PATH_OR_GLOB", "--clip400m", "--conf KEY=VALUE",
                 "--incremental, --no-incremental", "--t-en INT", "--set KEY=VALUE", "--fail-after PHASE"):
        assert flag in text
    assert "(default: 170000)" in text and "count-only" not in text


def test_expand_inputs_globs_dirs_and_list_files(tmp_path):
    for name in ("a.wat.gz", "b.wat.gz", "_SUCCESS"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text(f"# inputs\n{tmp_path / 'b.wat.gz'}\n\n")
    assert expand_inputs([str(tmp_path / "*.wat.gz")]) == [str(tmp_path / "a.wat.gz"), str(tmp_path / "b.wat.gz")]
    assert expand_inputs([f"@{tmp_path / 'list.txt'}", str(tmp_path / "b.wat.gz")]) == [str(tmp_path / "b.wat.gz")]
    assert str(tmp_path / "_SUCCESS") not in expand_inputs([str(tmp_path)])
    with pytest.raises(FileNotFoundError):
        expand_inputs([str(tmp_path / "missing.wat.gz")])


def test_file_count_uuid_buckets_and_reject_chunks():
    assert (n_files(0, 10), n_files(10, 10), n_files(11, 10)) == (1, 1, 2)
    assert uuid_range(0, 1) == (None, None)
    ranges = [uuid_range(k, 3) for k in range(3)]
    assert ranges == [(None, "555555"), ("555555", "aaaaaa"), ("aaaaaa", None)]
    # every uuid falls in exactly one bucket
    for u in ("000000" + "0" * 18, "555554" + "f" * 18, "555555" + "0" * 18, "ffffff" + "f" * 18):
        assert sum((lo is None or u >= lo) and (hi is None or u < hi) for lo, hi in ranges) == 1
    assert reject_chunks(["a", "b", "c", "d"], {"a": 3, "c": 1, "d": 2}, 2) == [["a", "c"], ["d"]]
    assert reject_chunks(["a"], {}, 1) == [[]]


def test_output_lock_is_exclusive_and_restores_an_output_cut_between_renames(tmp_path):
    out = tmp_path / "out"
    old = tmp_path / ".out.old-run1"
    old.mkdir()
    (old / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".out.staging-run2").mkdir()
    with output_lock(str(out), "curate"):
        assert (out / "_SUCCESS").exists()  # the previous complete output is back
        assert sorted(os.listdir(tmp_path)) == [".out.lock", "out"]
        with pytest.raises(RuntimeError, match="another curate run"):
            with output_lock(str(out), "curate"):
                pass


def _dry_run(*args):
    """submit.sh with DRY_RUN=1; the zip it keeps is checked (it must exist, for the printed command) and removed."""
    env = {**os.environ, "DRY_RUN": "1", "SPARK_SUBMIT": "spark-submit"}
    res = subprocess.run([os.path.join(ROOT, "infra", "submit.sh"), *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    if res.returncode == 0:
        zip_path = res.stdout.split("--py-files ", 1)[1].split(" ", 1)[0]
        assert os.path.isfile(zip_path) and zip_path in res.stderr  # the printed command can run as is
        shutil.rmtree(os.path.dirname(zip_path))
    return res


def test_submit_wrapper_ships_the_code():
    res = _dry_run("--config", "infra/curate.json", "--t-en", "20000")  # as infra/cron-curate.sh and README.md call it
    assert res.returncode == 0, res.stderr
    cmd, *files = res.stdout.splitlines()
    assert "--py-files" in cmd and "spark-defaults.conf" in cmd and cmd.rstrip().endswith("--t-en 20000")
    assert "/jobs/curate.py --config infra/curate.json" in cmd and "--name worldclip-curate" in cmd
    assert {"curation/annotate.py", "jobs/curate.py", "curation/inputs/wat.py"} <= set(files)
    for script in ("submit.sh", "cron-curate.sh"):
        assert subprocess.run(["bash", "-n", os.path.join(ROOT, "infra", script)]).returncode == 0


def test_submit_wrapper_submits_any_job_and_keeps_the_dry_run_zip():
    for job, args in (("curate", ["--config", "infra/curate.json"]),
                      ("download", ["--input", "s3://b/run/curated", "--output", "s3://b/run/images"]),
                      ("build_metadata", ["--config", "infra/metadata.json", "--output", "s3://b/metadata/v3"])):
        res = _dry_run(job, *args)
        assert res.returncode == 0, res.stderr
        cmd, *files = res.stdout.splitlines()
        assert f"/jobs/{job}.py {' '.join(args)}" in cmd and f"--name worldclip-{job}" in cmd
        assert {f"jobs/{job}.py", "metadata/build.py", "curation/storage.py"} <= set(files)
    res = _dry_run("no_such_job", "--x")
    assert res.returncode == 2 and "unknown job 'no_such_job'" in res.stderr and not res.stdout
