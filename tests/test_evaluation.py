"""The evaluation suite's metrics and readers, on cases whose answers are worked out by hand.

A model whose embeddings are constructed (ConstructedCLIP: an image's embedding is the one-hot of
its colour, a text's the sum of the one-hots of the words it contains) runs through the real
readers, transforms, tokenizer and encoders over fixtures written in each benchmark's layout, so
every expected number below follows from the fixture alone.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from training.evaluation import babel_imagenet as bi
from training.evaluation import cvqa, metrics, retrieval
from training.evaluation.common import EvalInputError, Progress
from training.tokenizer import Tokenizer, train_tokenizer
from training.transforms import CLIP_MEAN, CLIP_STD, ImageTransform

torch.set_num_threads(1)
DIM = 16
CPU = torch.device("cpu")
TRANSFORM = ImageTransform(16, train=False)
# word -> axis; an image of colour k has embedding e_k
WORDS = {"alpha": 0, "echo": 0, "golf": 0, "eins": 0, "bravo": 1, "zwei": 1, "charlie": 2, "drei": 2,
         "delta": 3, "vier": 3, "foxtrot": 3, "kilo": 5, "lima": 7, "hotel": 9, "india": 13}


def colour(k: int) -> tuple[int, int, int]:
    return (20 * k + 10, 128, 64)


def solid_jpeg(path: Path, k: int, size=(22, 17)) -> Path:
    """A flat image of colour k, not square (the eval transform resizes and centre-crops it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(k)).save(path, format="JPEG", quality=95)
    return path


class ConstructedCLIP(torch.nn.Module):
    """encode_image / encode_text as training.model.CLIP has them, with embeddings known by construction."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.seen: list[str] = []

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0].mean((1, 2)) * CLIP_STD[0] + CLIP_MEAN[0]) * 255  # the red channel, undone from normalisation
        k = ((red - 10) / 20).round().long()
        return F.one_hot(k, DIM).float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(tokens.shape[0], DIM)
        for i, row in enumerate(tokens):
            text = self.tokenizer.decode(row)
            self.seen.append(text)
            for w in re.findall(r"\w+", text):
                if w in WORDS:
                    out[i, WORDS[w]] += 1.0
        return out


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    corpus = [t.format(w) for w in WORDS for t in (*bi.OPENAI_IMAGENET_TEMPLATES, "pic {}", "an image of {}",
                                                    "a round-trip {}", "what is it {}")]
    corpus += [f"{a} {b}" for a in WORDS for b in WORDS]
    return Tokenizer.from_hf(train_tokenizer(corpus, vocab_size=600), context_length=48)


@pytest.fixture()
def model(tok) -> ConstructedCLIP:
    return ConstructedCLIP(tok)


def test_constructed_model_sees_what_the_fixture_draws(model, tmp_path):
    x = torch.stack([TRANSFORM(Image.open(solid_jpeg(tmp_path / f"{k}.jpg", k))) for k in (0, 3, 11)])
    assert model.encode_image(x).argmax(1).tolist() == [0, 3, 11]
    e = model.encode_text(model.tokenizer(["a photo of a delta.", "alpha bravo", "nothing here"]))
    assert e[0].nonzero().flatten().tolist() == [3] and e[1].nonzero().flatten().tolist() == [0, 1]
    assert e[2].abs().sum() == 0


# --- metrics on hand-made matrices ------------------------------------------------------------------


def _e(*axes) -> torch.Tensor:
    v = torch.zeros(4)
    for a in axes:
        v[a] = 1
    return F.normalize(v, dim=0)


def test_recall_with_several_captions_per_image_by_hand():
    img = torch.stack([_e(0), _e(1), _e(2)])
    txt = torch.stack([_e(0), _e(3, 1), _e(1), _e(1)])
    owner = torch.tensor([0, 0, 1, 2])
    i2t, t2i = metrics.retrieval_ranks(img, txt, owner)
    # image 0: its best caption (t0, 1.0) beats every wrong text; image 1: its t2 (1.0) ties the wrong
    # t3 (1.0), and ties count against; image 2: its t3 scores 0, as do the 3 wrong texts
    assert i2t.tolist() == [0, 1, 3]
    # t1 = (e3+e1)/sqrt2 scores 0 with its image 0 while image 1 scores .71 and image 2 ties at 0
    assert t2i.tolist() == [0, 2, 0, 2]
    r = metrics.recall_at_k(img, txt, owner, ks=(1, 2, 5))
    assert (r["i2t_r1"], r["i2t_r2"], r["i2t_r5"]) == (1 / 3, 2 / 3, 1.0)
    assert (r["t2i_r1"], r["t2i_r2"], r["t2i_r5"]) == (0.5, 0.5, 1.0)
    assert r["chance_i2t_r1"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3) and r["chance_t2i_r1"] == 1 / 3
    assert (r["images"], r["texts"]) == (3, 4)


def _brute_ranks(img, txt, owner):
    sims = img @ txt.t()
    n, m = sims.shape
    i2t = [sum(1 for j in range(m) if owner[j] != i and sims[i, j] >= max(sims[i, jj] for jj in range(m) if owner[jj] == i))
           for i in range(n)]
    t2i = [sum(1 for i in range(n) if i != owner[j] and sims[i, j] >= sims[owner[j], j]) for j in range(m)]
    return i2t, t2i


def test_blocked_ranks_equal_brute_force(monkeypatch):
    g = torch.Generator().manual_seed(4)
    img = F.normalize(torch.randn(7, 5, generator=g), dim=-1)
    txt = F.normalize(torch.randn(13, 5, generator=g), dim=-1)
    txt[3] = img[2]  # an exact pair, and a text tied with another
    txt[4] = txt[3]
    owner = torch.cat([torch.arange(7), torch.randint(0, 7, (6,), generator=g)])
    want = _brute_ranks(img, txt, owner.tolist())
    monkeypatch.setattr(metrics, "CHUNK", 3)  # blocks of 3, 3 and 1 image rows
    i2t, t2i = metrics.retrieval_ranks(img, txt, owner)
    assert (i2t.tolist(), t2i.tolist()) == want


def test_a_collapsed_model_scores_zero_not_one():
    same = F.normalize(torch.ones(6, 4), dim=-1)
    r = metrics.recall_at_k(same, same, torch.arange(6), ks=(1, 5))
    assert r["i2t_r1"] == r["t2i_r1"] == 0.0 and r["i2t_r5"] == 0.0
    with pytest.raises(ValueError, match="no text"):
        metrics.retrieval_ranks(same, same[:2], torch.tensor([0, 1]))


def test_top1_takes_the_first_best_class_like_the_reference():
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, float("-inf")], [0.0, 0.0, 0.0]])
    assert metrics.top1_correct(scores, [1, 1, 0]).tolist() == [False, True, True]


def test_paired_retrieval_recall_keeps_its_keys():
    from training.evaluate import retrieval_recall

    r = retrieval_recall(torch.eye(5), torch.eye(5))
    assert r["i2t_r1"] == r["t2i_r1"] == 1.0 and r["n"] == 5 and r["chance_r1"] == 0.2
    r = retrieval_recall(torch.eye(4), torch.eye(4).roll(1, 0))
    assert r["i2t_r1"] == 0.0 and r["i2t_r5"] == 1.0


def test_progress_logs_lines_off_a_terminal():
    buf = io.StringIO()
    with Progress(3, "things", "it", stream=buf, every_s=0.0) as p:
        p.update(2)
        p.update(1)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("things: 2/3 it") and lines[-1].startswith("things: 3/3 it")
    quiet = io.StringIO()
    with Progress(3, "x", enabled=False, stream=quiet) as p:
        p.update(3)
    assert quiet.getvalue() == ""


# --- Babel-ImageNet ---------------------------------------------------------------------------------

BABEL = {"XA": [[0, 3, 5, 7], ["alpha", "foxtrot", "kilo", "lima"]], "XB": [[0, 3, 13], ["echo", "delta", "india"]],
         "EN": [[0, 9], ["golf", "hotel"]]}
# class -> colours of its images: class 3 holds one image of colour 5 and class 7 two of colour 0
# (wrong in every language that has the class); class 11 belongs to no language
IMAGES = {0: [0, 0, 0], 3: [3, 3, 5], 5: [5, 5], 7: [0, 0], 9: [9], 11: [11]}


def babel_dir(tmp_path: Path) -> Path:
    d = tmp_path / "babel"
    d.mkdir()
    (d / bi.NAMES_FILE).write_text(json.dumps(BABEL))
    # EN has an entry (the file's round-trip translation), which the benchmark ignores for English
    (d / bi.PROMPTS_FILE).write_text(json.dumps({"XA": ["pic {}", "an image of {}"], "EN": ["a round-trip {}"]}))
    (d / bi.LANGUAGE_NAMES_FILE).write_text(json.dumps({"XA": "Xa-language", "XB": "Xb-language", "EN": "English"}))
    return d


def imagenet_dir(root: Path, name=str) -> Path:
    for cls, colours in IMAGES.items():
        for i, k in enumerate(colours):
            solid_jpeg(root / name(cls) / f"ILSVRC2012_val_{cls:04d}{i:04d}.JPEG", k)
    return root


def test_babel_imagenet_accuracy_per_language_by_hand(model, tmp_path):
    data = bi.load_babel_data(babel_dir(tmp_path))
    res = bi.evaluate_babel_imagenet(model, model.tokenizer, imagenet_dir(tmp_path / "in"), data, TRANSFORM, CPU,
                                     batch_size=4, progress=False)
    langs = res["languages"]
    # XA: 10 images of its 4 classes, wrong: the colour-5 image of class 3 and both class-7 images
    assert langs["XA"]["top1"] == 7 / 10 and langs["XA"]["images"] == 10 and langs["XA"]["classes"] == 4
    # XB: classes 0 and 3 have 6 images; the colour-5 one scores 0 with every class and the tie goes to class 0
    assert langs["XB"]["top1"] == 5 / 6 and langs["XB"]["images"] == 6 and langs["XB"]["classes"] == 3
    assert langs["EN"]["top1"] == 1.0 and langs["EN"]["images"] == 4
    assert res["mean_top1"] == pytest.approx((0.7 + 5 / 6 + 1.0) / 3)
    assert res["images"] == 12 and res["layout"] == "index" and res["classes_with_images"] == 6
    assert [langs[x]["prompts"] for x in ("XA", "XB", "EN")] == ["translated", "english", "english"]
    assert langs["XA"]["name"] == "Xa-language" and langs["XB"]["chance"] == 1 / 3
    seen = set(model.seen)
    assert {"pic alpha", "an image of lima"} <= seen, "XA's own templates"
    assert {"a photo of a echo.", "itap of my india.", "a bad photo of a golf."} <= seen, "English where none"
    assert not any("round-trip" in s for s in seen), "English uses OpenAI's templates, not the file's entry"
    assert not any("alpha" in s and s.startswith("a photo") for s in seen)


def test_babel_imagenet_options(model, tmp_path):
    data = bi.load_babel_data(babel_dir(tmp_path))
    root = imagenet_dir(tmp_path / "in")
    res = bi.evaluate_babel_imagenet(model, model.tokenizer, root, data, TRANSFORM, CPU, languages="xb,EN",
                                     prompts="label", present_only=True, progress=False)
    assert list(res["languages"]) == ["XB", "EN"]
    assert res["languages"]["XB"]["classes"] == 2, "class 13 has no images"
    assert res["languages"]["XB"]["prompts"] == "label" and set(model.seen) == {"echo", "delta", "golf", "hotel"}
    assert bi.select_languages(data, "prompted") == ["EN", "XA"]
    with pytest.raises(EvalInputError, match="no language ZZ"):
        bi.select_languages(data, "XA,ZZ")


def test_imagenet_folder_layouts(model, tmp_path):
    data = bi.load_babel_data(babel_dir(tmp_path))
    by_index = bi.evaluate_babel_imagenet(model, model.tokenizer, imagenet_dir(tmp_path / "a"), data, TRANSFORM, CPU,
                                          progress=False)["languages"]
    wnid = "n{:08d}".format
    partial = imagenet_dir(tmp_path / "b", wnid)
    with pytest.raises(EvalInputError, match="imagenet-synsets"):
        bi.imagenet_images(partial)
    synsets = tmp_path / "LOC_synset_mapping.txt"
    synsets.write_text("".join(f"{wnid(k)} class number {k}\n" for k in range(1000)))
    res = bi.evaluate_babel_imagenet(model, model.tokenizer, partial, data, TRANSFORM, CPU, synsets=str(synsets),
                                     progress=False)
    assert res["layout"] == "synset" and res["languages"] == by_index
    # all 1000 synset folders (most of them empty): the class index is the sorted position
    full = tmp_path / "c" / "val"
    shutil.copytree(partial, full)
    for k in range(1000):
        (full / wnid(k)).mkdir(exist_ok=True)
    paths, labels, layout = bi.imagenet_images(tmp_path / "c")  # finds val/
    assert layout == "synset" and sorted(set(labels)) == sorted(IMAGES) and len(paths) == 12
    (tmp_path / "d" / "n01440764").mkdir(parents=True)
    (tmp_path / "d" / "notes").mkdir()
    with pytest.raises(EvalInputError, match="class folders"):
        bi.imagenet_images(tmp_path / "d")
    bad = tmp_path / "e"
    bad.mkdir()
    (bad / bi.NAMES_FILE).write_text(json.dumps({"XA": [[0, 1], ["a"]]}))
    with pytest.raises(EvalInputError, match="equal length"):
        bi.load_babel_data(bad)


def test_a_broken_image_is_an_error_not_a_smaller_benchmark(model, tmp_path):
    data = bi.load_babel_data(babel_dir(tmp_path))
    root = imagenet_dir(tmp_path / "in")
    (root / "5" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EvalInputError, match="broken.jpg"):
        bi.evaluate_babel_imagenet(model, model.tokenizer, root, data, TRANSFORM, CPU, progress=False)


# --- XM3600 and XTD -------------------------------------------------------------------------------


def xm3600_dir(root: Path) -> Path:
    captions = {0: {"en": ["alpha", "delta bravo"], "de": ["eins"]}, 1: {"en": ["bravo"], "de": ["zwei"]},
                2: {"en": ["bravo"], "de": ["drei"]}, 3: {"de": ["vier"]}}
    root.mkdir()
    with open(root / "captions.jsonl", "w", encoding="utf-8") as f:
        for k, per in captions.items():
            key = f"{k:016x}"
            solid_jpeg(root / "images" / f"{key}.jpg", k)
            row = {"image/key": key, "image/locale": "de"}
            for loc, caps in per.items():
                row[loc] = {"caption": caps, "caption/tokenized": caps, "caption/tokenized/lowercase": caps}
            f.write(json.dumps(row) + "\n")
    return root


def test_xm3600_recall_per_locale_by_hand(model, tmp_path):
    ds = retrieval.load_xm3600(xm3600_dir(tmp_path / "xm"))
    assert list(ds.captions) == ["de", "en"] and ds.captions["en"][3] == []
    res = retrieval.evaluate_retrieval(model, model.tokenizer, ds, TRANSFORM, CPU, batch_size=3, progress=False)
    en, de = res["locales"]["en"], res["locales"]["de"]
    assert (en["images"], en["texts"]) == (3, 4), "image 3 has no English caption: not in the English pool"
    # the matrices of test_recall_with_several_captions_per_image_by_hand
    assert (en["i2t_r1"], en["i2t_r5"], en["t2i_r1"], en["t2i_r5"]) == (1 / 3, 1.0, 0.5, 1.0)
    assert all(de[f"{d}_r{k}"] == 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert res["mean"]["i2t_r1"] == pytest.approx(2 / 3) and res["mean"]["t2i_r1"] == pytest.approx(0.75)
    assert res["mean_recall"] == pytest.approx(sum(res["mean"].values()) / 6)
    (tmp_path / "xm" / "images" / f"{2:016x}.jpg").unlink()
    with pytest.raises(EvalInputError, match="1 of 4 images are missing"):
        retrieval.load_xm3600(tmp_path / "xm")


def test_xtd_recall_by_hand(model, tmp_path):
    names = [f"COCO_val2014_{k:012d}.jpg" for k in range(4)]
    for k, n in enumerate(names):
        solid_jpeg(tmp_path / "coco" / n, k)
    (tmp_path / "xtd.json").write_text(json.dumps({"images": names, "captions": {
        "en": ["alpha", "bravo", "delta", "delta"], "de": ["eins", ["zwei", "alpha"], "drei", "vier"]}}))
    res = retrieval.evaluate_retrieval(model, model.tokenizer, retrieval.load_xtd(tmp_path / "xtd.json", tmp_path / "coco"),
                                       TRANSFORM, CPU, progress=False)
    en, de = res["locales"]["en"], res["locales"]["de"]
    # en: image 2's caption "delta" scores 0 with it, tied with 3 wrong texts; image 3's "delta" ties
    # image 2's; text->image, only "delta" of image 2 loses (to image 3)
    assert (en["i2t_r1"], en["t2i_r1"], en["i2t_r5"]) == (0.5, 0.75, 1.0)
    # de: image 1 has two captions, "zwei" and "alpha"; "alpha" (e0) ties image 0's own "eins", so image
    # 0 misses at 1, and as a query "alpha" finds image 0 (1.0) before its own image 1 (0.0)
    assert de["texts"] == 5 and de["i2t_r1"] == 3 / 4 and de["t2i_r1"] == 4 / 5 and de["i2t_r5"] == 1.0
    with pytest.raises(EvalInputError, match="3 captions for 4 images"):
        (tmp_path / "bad.json").write_text(json.dumps({"images": names, "captions": {"en": ["a", "b", "c"]}}))
        retrieval.load_xtd(tmp_path / "bad.json", tmp_path / "coco")


def test_real_xtd_json_loads_in_its_layout(shared_data, tmp_path):
    path = shared_data / "eval" / "babel-imagenet" / "xtd.json"
    names = json.loads(path.read_text(encoding="utf-8"))["images"]
    for n in names:
        (tmp_path / n).write_bytes(b"")  # the loader checks the files exist; nothing decodes them here
    ds = retrieval.load_xtd(path, tmp_path)
    assert len(ds.images) == 1000 and len(ds.captions) == 11 and {"en", "de", "jp", "zh", "tr"} <= set(ds.captions)
    assert all(len(c) == 1000 and all(len(x) == 1 and x[0] for x in c) for c in ds.captions.values())
    (tmp_path / names[17]).unlink()
    with pytest.raises(EvalInputError, match="1 of 1000"):
        retrieval.load_xtd(path, tmp_path)


# --- CVQA -----------------------------------------------------------------------------------------

CVQA_ROWS = [  # (colour, subset, options, label, translated options)
    (0, "('English', 'United States')", ["alpha", "bravo", "charlie", "delta"], 0, ["bravo", "alpha", "charlie", "delta"]),
    (1, "('English', 'United States')", ["alpha", "bravo", "charlie", "delta"], 2, ["alpha", "bravo", "charlie", "delta"]),
    (2, "('German', 'Germany')", ["eins", "zwei", "vier", "eins"], 1, ["alpha", "bravo", "charlie", "delta"]),
    (3, "('German', 'Germany')", ["eins", "zwei", "drei", "vier"], 3, ["alpha", "bravo", "charlie", "delta"]),
    (3, "('German', 'Germany')", ["eins", "zwei", "drei", "vier"], -1, ["alpha", "bravo", "charlie", "delta"]),
]


def cvqa_records(root: Path) -> list[dict]:
    rows = []
    for i, (k, subset, opts, label, opts_en) in enumerate(CVQA_ROWS):
        solid_jpeg(root / "images" / f"{i}.jpg", k)
        rows.append({"ID": f"{i}_0", "Subset": subset, "Question": "what is it", "Translated Question": "what is it",
                     "Options": opts, "Translated Options": opts_en, "Label": label, "Category": "c",
                     "Image Type": "Self", "Image Source": "s", "License": "l"})
    return rows


def test_cvqa_accuracy_per_subset_by_hand(model, tmp_path):
    root = tmp_path / "cvqa"
    rows = cvqa_records(root)
    with open(root / "test.jsonl", "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            r = dict(r)
            if i == 1:
                r["image"] = {"path": f"images/{i}.jpg"}
                r["Options"] = str(r["Options"])  # a list stored as its text, as some exports do
            else:
                r["image_path"] = f"images/{i}.jpg"
            f.write(json.dumps(r) + "\n")
    res = cvqa.evaluate_cvqa(model, model.tokenizer, cvqa.load_cvqa(root), TRANSFORM, CPU, progress=False)
    # English: row 0 right, row 1 picks "bravo" (label charlie); German: row 2's options all score 0 and
    # the first wins (label 1), row 3 right; row 4 has no label
    assert res["locales"] == {"English (United States)": {"accuracy": 0.5, "questions": 2, "chance": 0.25},
                              "German (Germany)": {"accuracy": 0.5, "questions": 2, "chance": 0.25}}
    assert (res["mean_accuracy"], res["questions"], res["unlabeled"]) == (0.5, 4, 1)
    assert "what is it alpha" in model.seen
    en = cvqa.evaluate_cvqa(model, model.tokenizer, cvqa.load_cvqa(root / "test.jsonl"), TRANSFORM, CPU,
                            english=True, progress=False)
    assert en["locales"]["English (United States)"]["accuracy"] == 0.0 and en["text"] == "english"
    assert en["locales"]["German (Germany)"]["accuracy"] == 0.5


def test_cvqa_parquet_as_published_scores_the_same(model, tmp_path):
    root = tmp_path / "hf"
    rows = cvqa_records(tmp_path / "files")
    for i, r in enumerate(rows):
        r["image"] = {"bytes": (tmp_path / "files" / "images" / f"{i}.jpg").read_bytes(), "path": f"{i}.jpg"}
    (root / "data").mkdir(parents=True)
    half = 3  # two shards, as the Hub writes data/test-0000X-of-0000N.parquet
    pq.write_table(pa.Table.from_pylist(rows[:half]), root / "data" / "test-00000-of-00002.parquet", row_group_size=2)
    pq.write_table(pa.Table.from_pylist(rows[half:]), root / "data" / "test-00001-of-00002.parquet")
    loaded = cvqa.load_cvqa(root)
    assert all(isinstance(r["image"], cvqa.ParquetImage) for r in loaded)
    res = cvqa.evaluate_cvqa(model, model.tokenizer, loaded, TRANSFORM, CPU, batch_size=1, progress=False)
    assert res["mean_accuracy"] == 0.5 and res["unlabeled"] == 1
    assert res["locales"]["German (Germany)"] == {"accuracy": 0.5, "questions": 2, "chance": 0.25}


def test_cvqa_input_errors(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"Question": "q", "Options": ["x", "y"], "Label": 0,
                                                  "image_path": "missing.jpg", "Subset": "s"}) + "\n")
    with pytest.raises(EvalInputError, match="missing.jpg"):
        cvqa.load_cvqa(tmp_path / "a.jsonl")
    solid_jpeg(tmp_path / "i.jpg", 1)
    (tmp_path / "b.jsonl").write_text(json.dumps({"Question": "q", "Options": ["x", "y"], "image_path": "i.jpg"}) + "\n")
    with pytest.raises(EvalInputError, match="missing Subset, Label"):
        cvqa.load_cvqa(tmp_path / "b.jsonl")
    assert cvqa.subset_name("('Japanese', 'Japan')") == "Japanese (Japan)" and cvqa.subset_name("xx") == "xx"


# --- the real Babel-ImageNet files --------------------------------------------------------------------


def test_openai_templates_are_the_prompts_files_english_source(shared_data):
    """The prompts file's EN entry is a round trip through translation of OpenAI's 80 templates,
    in the same order: most of them come back identical up to spacing and case."""
    prompts = json.loads((shared_data / "eval" / "babel-imagenet" / bi.PROMPTS_FILE).read_text(encoding="utf-8"))

    def norm(t):
        return re.sub(r"\s+([.,])", r"\1", re.sub(r"\s+", " ", t)).strip().lower()

    assert len(bi.OPENAI_IMAGENET_TEMPLATES) == len(prompts["EN"]) == 80
    assert len(set(bi.OPENAI_IMAGENET_TEMPLATES)) == 80 and all("{}" in t for t in bi.OPENAI_IMAGENET_TEMPLATES)
    same = sum(norm(a) == norm(b) for a, b in zip(bi.OPENAI_IMAGENET_TEMPLATES, prompts["EN"], strict=True))
    assert same >= 60, same


def test_real_babel_imagenet_files_load(shared_data):
    data = bi.load_babel_data(shared_data / "eval" / "babel-imagenet")
    assert len(data.classes) == 298 and len(data.prompts) == 90 and data.language_names["DE"] == "German"
    idx, names = data.classes["EN"]
    assert idx == list(range(1000)) and names[1] == "goldfish"
    assert bi.templates_for("DE", data)[1] == "translated" and bi.templates_for("AB", data)[1] == "english"
    assert bi.templates_for("EN", data)[0] == list(bi.OPENAI_IMAGENET_TEMPLATES)
    assert len(bi.select_languages(data, "prompted")) == 90


def test_classifier_is_the_mean_of_normalised_prompt_embeddings(model):
    w = bi.class_embeddings(model, model.tokenizer, ["alpha", "bravo"], ["{}", "{} delta"], CPU, batch_size=3)
    e = torch.eye(DIM)
    a = F.normalize(F.normalize(e[0], dim=0) + F.normalize(e[0] + e[3], dim=0), dim=0)  # "alpha", "alpha delta"
    assert torch.allclose(w[0], a) and w.shape == (2, DIM)
    assert np.isclose(float(w.norm(dim=1)[1]), 1.0)
