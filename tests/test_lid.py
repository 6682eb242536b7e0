"""LanguageIdentifier with the real lid.176.ftz: accuracy on real labelled sentences, batch size, edge cases."""

from __future__ import annotations

import collections
import hashlib
import lzma
import pickle

import numpy as np
import pytest

import curation.lid as lid_module
from curation.languages import ISO3_APPROXIMATE, LID_TO_LANG, OTHER, iso3_to_lang
from curation.lid import MAX_LID_CHARS, LanguageIdentifier, default_model_path
from tests.conftest import shared_file

PER_LANGUAGE = 300


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.fixture(scope="module")
def fasttext_model():
    import fasttext

    return fasttext.load_model(default_model_path())


def _tatoeba_by_code(path) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = collections.defaultdict(list)
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[1] != "\\N" and parts[2].strip():
                rows[parts[1]].append(parts[2])
    return rows


def _subsample(sentences: list[str], n: int) -> list[str]:
    """Deterministic: the n sentences with the smallest content hash."""
    return sorted(sentences, key=lambda s: hashlib.blake2b(s.encode(), digest_size=8).digest())[:n]


def test_accuracy_on_tatoeba_over_known_languages(lid):
    rows = _tatoeba_by_code(shared_file("lid/tatoeba-nonascii-CC0.csv.xz"))
    known = set(LID_TO_LANG.values())
    texts, gold, codes = [], [], []
    for code in sorted(rows):
        lang = iso3_to_lang(code)
        if lang == OTHER or lang not in known or code in ISO3_APPROXIMATE:
            continue
        sample = _subsample(rows[code], PER_LANGUAGE)
        texts += sample
        gold += [lang] * len(sample)
        codes += [code] * len(sample)
    assert len(set(codes)) >= 10, f"too few known languages in the test file: {sorted(set(codes))}"
    _labels, _probs, langs = lid.predict_arrays(texts)
    correct = langs == np.array(gold, dtype=object)
    per_code = {
        code: (int(correct[np.array(codes) == code].sum()), int((np.array(codes) == code).sum()))
        for code in sorted(set(codes))
    }
    report = ", ".join(f"{c}={k}/{n}" for c, (k, n) in per_code.items())
    accuracy = float(correct.mean())
    assert accuracy >= 0.90, f"accuracy {accuracy:.3f} over {len(texts)} sentences; per language: {report}"
    # the big languages must each be well identified, not just the average
    for code, (k, n) in per_code.items():
        if n >= 100:
            assert k / n >= 0.75, f"{code}: {k}/{n}; per language: {report}"


def test_100k_short_texts_in_one_call_match_fasttext(lid, fasttext_model):
    words = ["cat", "Katze", "chat", "кошка", "猫", "gato", "γάτα", "kedi", "बिल्ली", "고양이"]
    texts = [f"{words[i % 10]} {words[(i * 7) % 10]} photo {i}" for i in range(100_000)]
    assert len(list(LanguageIdentifier._chunks(texts))) == 1  # a single fastText call
    labels, probs, langs = lid.predict_arrays(texts)
    assert len(labels) == len(probs) == len(langs) == 100_000
    assert probs.dtype == np.float32 and labels.dtype == object and langs.dtype == object
    assert ((probs > 0) & (probs <= 1)).all()
    # same answers as fastText's own batch API (our sanitising is a no-op on these texts)
    ref_labels, ref_probs = fasttext_model.predict(texts[:5000])
    assert labels[:5000].tolist() == [lab[0].removeprefix("__label__") for lab in ref_labels]
    np.testing.assert_allclose(probs[:5000], np.minimum(np.concatenate(ref_probs), 1.0), rtol=1e-6)
    assert set(langs.tolist()) <= set(LID_TO_LANG.values())


def test_predict_returns_label_prob_lang(lid):
    out = lid.predict(["Der Hund schläft im Garten.", "这是一只在花园里睡觉的狗", "Собака спит в саду."])
    assert [o[0] for o in out] == ["de", "zh", "ru"]
    assert [o[2] for o in out] == ["de", "zh", "ru"]
    assert all(isinstance(o[1], float) and 0.5 < o[1] <= 1.0 for o in out)


def test_empty_newline_and_huge_texts_do_not_fail(lid):
    huge = "Ceci est une phrase en français. " * 40_000  # ~1.3 MB
    texts = ["", "   ", "\n\n", "Собака спит\nв саду.", huge, "x" * 1_000_000, "bad \ud800 surrogate text", "ok"]
    out = lid.predict(texts)
    assert len(out) == len(texts)
    assert out[0] == ("", 0.0, OTHER) and out[1] == ("", 0.0, OTHER) and out[2] == ("", 0.0, OTHER)
    assert out[3][2] == "ru"
    assert out[3] == lid.predict(["Собака спит в саду."])[0]  # a newline is a space
    assert out[4][2] == "fr"
    assert out[4] == lid.predict([huge[:MAX_LID_CHARS]])[0]  # long texts are cut to MAX_LID_CHARS
    assert all(isinstance(lang, str) for _, _, lang in out)
    assert lid.predict([]) == []


def test_columns_and_odd_characters(lid):
    column = np.array(["Der Hund schläft.", "nul\x00inside text", "\u3000", "tab\tand\rcr"], dtype=object)
    labels, probs, langs = lid.predict_arrays(column)
    assert labels[0] == "de" and langs[2] == OTHER and probs[2] == 0.0
    assert len(labels) == 4 and all(isinstance(x, str) for x in langs)
    assert lid.predict(iter(["Der Hund schläft."]))[0][2] == "de"  # any iterable of str
    import pyarrow as pa

    assert lid.predict_arrays(pa.chunked_array([["Der Hund schläft."], ["Собака спит."]]))[2].tolist() == ["de", "ru"]
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        lid.predict_arrays(pa.array(["Der Hund schläft.", None]))


def test_non_str_input_is_a_clear_error(lid):
    with pytest.raises(TypeError, match=r"texts\[1\] is bytes"):
        lid.predict(["fine", b"bytes"])
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        lid.predict_arrays([None])
    with pytest.raises(TypeError, match="not a single str"):
        lid.predict("a single string")


def test_chunked_prediction_equals_one_call(lid, monkeypatch):
    texts = [f"Il gatto numero {i} dorme sul divano" if i % 3 else f"Кот номер {i}" for i in range(1000)]
    texts[10] = ""
    whole = lid.predict_arrays(texts)
    monkeypatch.setattr(lid_module, "CHUNK_TEXTS", 97)
    monkeypatch.setattr(lid_module, "CHUNK_CHARS", 1500)
    chunks = list(LanguageIdentifier._chunks(texts))
    assert len(chunks) > 10 and chunks[0][0] == 0 and chunks[-1][1] == len(texts)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    chunked = lid.predict_arrays(texts)
    for a, b in zip(whole, chunked, strict=True):
        assert a.tolist() == b.tolist()


def test_topk(lid):
    out = lid.predict_topk(["Der Hund schläft im Garten.", ""], k=3)
    assert len(out[0]) == 3 and out[1] == []
    assert out[0][0][0] == "de" and out[0][0][1] >= out[0][1][1] >= out[0][2][1]
    assert LanguageIdentifier(k=2).predict_topk(["hello world"])[0].__len__() == 2
    with pytest.raises(ValueError):
        LanguageIdentifier(k=0)


def test_construction_is_lazy_and_picklable(tmp_path):
    missing = LanguageIdentifier(tmp_path / "nope.ftz")  # no I/O at construction
    with pytest.raises(FileNotFoundError, match="nope.ftz"):
        missing.predict(["hello"])
    ident = LanguageIdentifier()
    clone = pickle.loads(pickle.dumps(ident))
    assert len(pickle.dumps(ident)) < 1000
    assert clone.model_path == ident.model_path == default_model_path()  # resolved where it runs
    assert clone.predict(["Das ist gut."]) == ident.predict(["Das ist gut."])
    assert len(clone.labels) == 176


def test_any_fasttext_model_by_path_with_glotlid_style_labels(tmp_path):
    """A real supervised fastText model trained here with GlotLID-style labels maps via ISO 639-3."""
    import fasttext

    vocab = {
        "eng_Latn": "the cat sat on a mat with the dog and a bird in the house".split(),
        "deu_Latn": "die katze sitzt auf der matte mit dem hund und einem vogel im haus".split(),
        "als_Latn": "macja ulet mbi qilimin me qenin dhe nje zog ne shtepi".split(),
    }
    lines = []
    for i in range(600):
        label = list(vocab)[i % 3]
        words = vocab[label]
        lines.append(f"__label__{label} " + " ".join(words[(i * k) % len(words)] for k in range(1, 8)))
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = fasttext.train_supervised(str(train), epoch=20, lr=0.5, dim=16, minn=2, maxn=4, thread=1, seed=1,
                                      verbose=0)
    path = tmp_path / "glotlid-style.bin"
    model.save_model(str(path))
    out = LanguageIdentifier(path).predict(["the dog and the cat in the house", "der hund und die katze",
                                            "qenin dhe macja ne shtepi", ""])
    assert [o[0] for o in out[:3]] == ["eng_Latn", "deu_Latn", "als_Latn"]
    assert [o[2] for o in out] == ["en", "de", "sq", OTHER]
