"""`python -m training.evaluate` end to end: a tiny checkpoint from the project's trainer, every
benchmark over generated fixtures in its published layout, and the real Babel-ImageNet and XTD files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from training import sample_shards
from training.evaluate import main
from training.evaluation import fixtures

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory written by training.train: checkpoints/step-*.pt and tokenizer.json."""
    from training.train import train

    base = tmp_path_factory.mktemp("eval-run")
    sample_shards.generate(base / "sample", sample_shards.SampleConfig(seed=2, train_images=64, shards=1))
    cfg = {"model": {"embed_dim": 32, "vision": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "heads": 2},
                     "text": {"context_length": 16, "vocab_size": None, "width": 32, "layers": 1, "heads": 2}},
           "data": {"shuffle_buffer": 32, "workers": 0},
           "optim": {"steps": 2, "batch_size": 16, "lr": 1e-3, "warmup_steps": 1},
           "run": {"checkpoint_every": 1000, "log_every": 1, "threads": 1}, "tokenizer": {"vocab_size": 300}}
    (base / "micro.json").write_text(json.dumps(cfg))
    rep = train(["--config", str(base / "micro.json"), "--data", str(base / "sample"), "--output", str(base / "run"),
                 "--quiet", "--no-eval"])
    assert rep["finished"]
    return base / "run"


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval-fixtures") / "fx"
    fixtures.generate(root)
    return root


def _check_recalls(r: dict) -> None:
    for x in (*r["locales"].values(), r["mean"]):
        for d in ("i2t", "t2i"):
            assert 0.0 <= x[f"{d}_r1"] <= x[f"{d}_r5"] <= x[f"{d}_r10"] <= 1.0


def test_cli_runs_every_benchmark_on_a_trained_checkpoint(run_dir, fixture_root, tmp_path, capsys):
    out = tmp_path / "out"
    res = main(["--checkpoint", str(run_dir), *fixtures.fixture_args(fixture_root), "--output", str(out),
                "--workers", "1", "--batch-size", "7", "--threads", "1"])
    assert res["checkpoint"]["step"] == 2 and res["checkpoint"]["checkpoint"].endswith("step-00000002.pt")

    babel = res["babel_imagenet"]
    assert set(babel["languages"]) == {"AR", "EN", "HI", "RU", "ZH"} and babel["layout"] == "index"
    per_class = fixtures.FixtureConfig().images_per_class
    for code, lang in (("AR", "ar"), ("HI", "hi"), ("ZH", "zh"), ("EN", "en")):
        n = len(fixtures.babel_classes(lang))
        assert babel["languages"][code]["classes"] == n and babel["languages"][code]["images"] == n * per_class
    assert {k: v["prompts"] for k, v in babel["languages"].items()} == {
        "AR": "translated", "EN": "english", "HI": "english", "RU": "translated", "ZH": "translated"}
    assert babel["mean_top1"] == pytest.approx(sum(v["top1"] for v in babel["languages"].values()) / 5)

    xm = res["xm3600"]
    assert set(xm["locales"]) == set(sample_shards.LANGS)
    assert xm["locales"]["en"]["texts"] == 60 and xm["locales"]["hi"]["texts"] == 30 and xm["images"] == 30
    _check_recalls(xm)
    _check_recalls(res["xtd"])
    assert all(x["texts"] == 30 for x in res["xtd"]["locales"].values())
    cv = res["cvqa"]
    assert set(cv["locales"]) == {f"{a} ({b})" for a, b in fixtures.CVQA_SUBSETS.values()}
    assert all(x["questions"] == 30 and x["chance"] == 0.25 and 0 <= x["accuracy"] <= 1 for x in cv["locales"].values())

    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["babel_imagenet"] == babel and saved["cvqa"] == cv and saved["config"]["workers"] == 1
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert all(s in page for s in ("Babel-ImageNet", "XM3600", "XTD", "CVQA", "Hindi (India)", ">ZH<"))
    stdout = capsys.readouterr().out
    assert "Babel-ImageNet zero-shot top-1: 5 languages" in stdout and "Russian (Russia)" in stdout
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["babel_imagenet_mean_top1"] == babel["mean_top1"] and summary["output"][0] == str(out / "results.json")


def test_cli_user_errors_exit_2_with_one_line(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(run_dir), "--xm3600", str(tmp_path / "nope"), "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: XM3600:") and "captions.jsonl" in err[0]
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "none.pt"), "--cvqa", str(tmp_path)])
    assert e.value.code == 2 and "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(run_dir), "--xtd", "x.json"])  # argparse: --xtd needs --xtd-images
    assert e.value.code == 2


def test_cli_on_the_real_babel_imagenet_and_xtd_files(run_dir, shared_data, tmp_path):
    """The published class names and prompts over a synset-layout folder, and the real XTD captions."""
    babel = shared_data / "eval" / "babel-imagenet"
    names = json.loads((babel / "babel_imagenet-298.json").read_text(encoding="utf-8"))
    langs = ["EN", "DE", "JA", "AB"]  # AB (Abkhazian) has no translated prompts
    present = sorted({i for lang in langs for i in names[lang][0][:3]})
    wnid = "n{:08d}".format
    (tmp_path / "synsets.txt").write_text("".join(wnid(k) + "\n" for k in range(1000)))
    for k, cls in enumerate(present):
        d = tmp_path / "imagenet" / wnid(cls)
        d.mkdir(parents=True)
        Image.new("RGB", (20, 16), (30 * k % 255, 90, 160)).save(d / "ILSVRC2012_val_00000001.JPEG")
    xtd = json.loads((babel / "xtd.json").read_text(encoding="utf-8"))
    (tmp_path / "coco").mkdir()
    for i, n in enumerate(xtd["images"]):
        Image.new("RGB", (8, 8), (i % 256, (7 * i) % 256, 40)).save(tmp_path / "coco" / n)
    res = main(["--checkpoint", str(run_dir), "--babel-imagenet", str(tmp_path / "imagenet"), "--babel-data", str(babel),
                "--imagenet-synsets", str(tmp_path / "synsets.txt"), "--babel-languages", ",".join(langs),
                "--babel-present-classes-only", "--xtd", str(babel / "xtd.json"), "--xtd-images", str(tmp_path / "coco"),
                "--workers", "0", "--batch-size", "512", "--no-progress"])
    got = res["babel_imagenet"]["languages"]
    assert list(got) == langs and res["babel_imagenet"]["layout"] == "synset"
    for lang in langs:
        mine = [i for i in names[lang][0] if i in present]
        assert got[lang]["classes"] == got[lang]["images"] == len(mine)
    assert [got[x]["prompts"] for x in langs] == ["english", "translated", "translated", "english"]
    assert got["DE"]["name"] == "German" and got["AB"]["name"] == "Abkhazian"
    xr = res["xtd"]
    assert xr["locales_scored"] == 11 and all(v["images"] == v["texts"] == 1000 for v in xr["locales"].values())
    _check_recalls(xr)


def test_help_documents_every_benchmark_flag():
    out = subprocess.run([sys.executable, "-m", "training.evaluate", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for flag in ("--checkpoint", "--babel-imagenet", "--babel-data", "--babel-languages", "--imagenet-synsets",
                 "--xm3600", "--xtd", "--xtd-images", "--cvqa", "--cvqa-english", "--output", "--workers"):
        assert flag in out, flag
