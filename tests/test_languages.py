"""The LID-label -> metadata-language table against the real lid.176 model, merges, ISO 639-3 codes."""

from __future__ import annotations

import re

import pytest

from curation.languages import (
    ISO3_APPROXIMATE,
    ISO3_TO_LANG,
    LID_TO_LANG,
    NO_SPACE_LANGS,
    OTHER,
    iso3_to_lang,
    metadata_languages,
    to_metadata_lang,
    wiki_to_lang,
)
from tests.conftest import SHARED_DATA

WIKI_CODE = re.compile(r"^[a-z]{2,3}(_[a-z]+)*$")


@pytest.fixture(scope="module")
def model_labels() -> list[str]:
    import fasttext

    from curation.lid import default_model_path

    return fasttext.load_model(default_model_path()).get_labels()


def test_every_label_of_the_real_model_is_mapped(model_labels):
    assert len(model_labels) == 176
    short = {lab.removeprefix("__label__") for lab in model_labels}
    assert short == set(LID_TO_LANG), (
        f"missing: {sorted(short - set(LID_TO_LANG))}, extra: {sorted(set(LID_TO_LANG) - short)}"
    )
    for lab in model_labels:
        lang = to_metadata_lang(lab)
        assert lang == LID_TO_LANG[lab.removeprefix("__label__")]
        assert lang != OTHER and WIKI_CODE.match(lang), lab


def test_paper_merges_and_kept_codes():
    assert to_metadata_lang("__label__yue") == "zh"
    assert to_metadata_lang("wuu") == "zh"
    assert to_metadata_lang("__label__zh") == "zh"
    assert to_metadata_lang("lrc") == "fa"  # no Wikipedia of its own
    for kept in ("nds", "als", "ceb", "war", "sh", "no", "nn", "arz", "azb", "bh", "cbk"):
        assert to_metadata_lang(f"__label__{kept}") == kept
    assert wiki_to_lang("zh_yue") == "zh" and wiki_to_lang("zh_classical") == "zh"
    assert wiki_to_lang("zh-min-nan") == "zh" and wiki_to_lang("be_tarask") == "be"
    assert wiki_to_lang("nds_nl") == "nds" and wiki_to_lang("de") == "de"
    # metadata languages are what the curate job looks up: merged variants are not among them
    langs = metadata_languages()
    assert "zh" in langs and "yue" not in langs and "wuu" not in langs and "lrc" not in langs
    assert langs == sorted(set(langs)) and OTHER not in langs


def test_unknown_labels_go_to_other():
    for label in ("", "__label__", "__label__xx", "klingon", "__label__zzz_Zzzz", "eng-"):
        assert to_metadata_lang(label) == OTHER, label
    assert to_metadata_lang(None) == OTHER  # type: ignore[arg-type]
    assert iso3_to_lang("qqq") == OTHER and iso3_to_lang(None) == OTHER  # type: ignore[arg-type]


def test_glotlid_and_nllb_style_labels():
    assert to_metadata_lang("__label__eng_Latn") == "en"
    assert to_metadata_lang("__label__zho_Hans") == "zh"
    assert to_metadata_lang("cmn_Hant") == "zh"
    assert to_metadata_lang("__label__arb_Arab") == "ar"
    assert to_metadata_lang("__label__yue_Hant") == "zh"
    # ISO 'als' is Tosk Albanian, the Wikipedia/lid.176 'als' is Alemannic (ISO 'gsw')
    assert to_metadata_lang("__label__als_Latn") == "sq"
    assert to_metadata_lang("__label__als") == "als"
    assert to_metadata_lang("__label__gsw_Latn") == "als"
    assert to_metadata_lang("kab") == "kab"  # bare ISO 639-3 code not in lid.176


def test_iso3_codes():
    expected = {"cmn": "zh", "arb": "ar", "fra": "fr", "nob": "no", "nno": "nn", "ell": "el", "bul": "bg",
                "dan": "da", "swe": "sv", "pol": "pl", "zsm": "ms", "rus": "ru", "ukr": "uk", "bel": "be",
                "ben": "bn", "heb": "he", "yid": "yi", "lzh": "zh", "yue": "zh", "eng": "en", "jpn": "ja",
                "ENG": "en", "fin": "fi", "fkv": "fi"}
    for code, lang in expected.items():
        assert iso3_to_lang(code) == lang, code
    # every ISO code maps to a Wikipedia-style code or other; every lid.176 language is reachable
    for code, lang in ISO3_TO_LANG.items():
        assert re.match(r"^[a-z]{3}$", code), code
        assert lang == OTHER or WIKI_CODE.match(lang), (code, lang)
    assert set(LID_TO_LANG.values()) <= set(ISO3_TO_LANG.values())
    assert ISO3_APPROXIMATE <= set(ISO3_TO_LANG) | set(LID_TO_LANG)


def test_iso3_codes_of_the_shared_wordnet_files():
    files = sorted((SHARED_DATA / "wordnet").glob("omw*/wn-*-*.tab*"))
    if not files:
        pytest.skip(f"no OMW files under {SHARED_DATA / 'wordnet'}")
    unmapped = []
    for path in files:
        code = path.name.split(".")[0].rsplit("-", 1)[1]
        if iso3_to_lang(code) == OTHER and code not in {"aar", "iii", "lub", "nbl", "nde"}:
            unmapped.append(code)
    assert not unmapped, f"OMW/CLDR codes without a metadata language: {unmapped}"


def test_no_space_languages():
    for lang in ("zh", "ja", "th", "km", "lo", "my", "bo"):
        assert lang in NO_SPACE_LANGS
    for lang in ("en", "ko", "vi", "ar", "hi", "ru"):
        assert lang not in NO_SPACE_LANGS
    assert isinstance(NO_SPACE_LANGS, frozenset)


def test_every_code_of_the_tatoeba_file_is_mapped():
    import lzma

    path = SHARED_DATA / "lid" / "tatoeba-nonascii-CC0.csv.xz"
    if not path.exists():
        pytest.skip(f"{path} is absent on this machine")
    with lzma.open(path, "rt", encoding="utf-8") as f:
        codes = {line.split("\t", 2)[1] for line in f if line.count("\t") >= 2}
    codes.discard("\\N")  # rows without a language
    missing = sorted(c for c in codes if c not in ISO3_TO_LANG)
    assert not missing, f"ISO 639-3 codes of the Tatoeba file not in ISO3_TO_LANG: {missing}"
