"""Language codes: LID labels -> metadata languages (Wikipedia codes), ISO 639-3 codes, no-space set.

Metadata is built per Wikipedia language, so a "metadata language" is a Wikipedia language
code (`en`, `zh`, `ceb`, `als` ...) or `other`. Curation looks up the metadata of the language
LID assigns to a text, so every label of the LID model must map to exactly one metadata
language; this module holds that one table.

Merges (MetaCLIP 2 collapses Wikipedia variants into their base language; we do the same for
the LID labels of those variants):
- `yue` (Cantonese; Wikipedia `zh_yue`) -> `zh`. MetaCLIP 2 merges `zh_yue`, `zh_classical`
  and `zh_min_nan` into `zh`; ISO `lzh` (classical) and `nan` (Min Nan) follow.
- `wuu` (Wu) -> `zh`. lid.176 fires `wuu` mostly on Mandarin text in simplified characters, and
  the `wuu` Wikipedia is tiny, so those texts are better served by the `zh` metadata.
- `lrc` (Northern Luri) has no Wikipedia -> `fa`, the nearest one (same script, close language).
- Wikipedia variants `be_tarask` -> `be`, `nds_nl` -> `nds`, `cbk_zam` -> `cbk` (the LID label).
Not merged: `no`/`nn`, `sh`/`sr`/`hr`/`bs`, `nds`, `als` (Alemannic), `arz`, `azb`, `pnb`,
`ckb`, `mzn`, `bh` ... keep their own Wikipedia codes, like in MetaCLIP 2.

Careful: the LID/Wikipedia code `als` is Alemannic (ISO 639-3 `gsw`), while ISO 639-3 `als` is
Tosk Albanian (`sq`); ISO3_TO_LANG uses ISO semantics, LID_TO_LANG uses Wikipedia semantics.
Models with `xxx_Scrp` labels (GlotLID, NLLB LID-218, e.g. `eng_Latn`) map through ISO3_TO_LANG.
"""

from __future__ import annotations

from functools import lru_cache

OTHER = "other"
LABEL_PREFIX = "__label__"

# Every label of lid.176 (fastText language identification, 176 languages), in the model's
# order, -> metadata language. Keys are the labels without "__label__".
LID_TO_LANG: dict[str, str] = {
    "en": "en", "ru": "ru", "de": "de", "fr": "fr", "it": "it", "ja": "ja", "es": "es",
    "ceb": "ceb", "tr": "tr", "pt": "pt", "uk": "uk", "eo": "eo", "pl": "pl", "sv": "sv",
    "nl": "nl", "he": "he", "zh": "zh", "hu": "hu", "ar": "ar", "ca": "ca", "fi": "fi",
    "cs": "cs", "fa": "fa", "sr": "sr", "el": "el", "vi": "vi", "bg": "bg", "ko": "ko",
    "no": "no", "mk": "mk", "ro": "ro", "id": "id", "th": "th", "hy": "hy", "da": "da",
    "ta": "ta", "hi": "hi", "hr": "hr", "sh": "sh", "be": "be", "ka": "ka", "te": "te",
    "kk": "kk", "war": "war", "lt": "lt", "gl": "gl", "sk": "sk", "bn": "bn", "eu": "eu",
    "sl": "sl", "kn": "kn", "ml": "ml", "mr": "mr", "et": "et", "az": "az", "ms": "ms",
    "sq": "sq", "la": "la", "bs": "bs", "nn": "nn", "ur": "ur", "lv": "lv", "my": "my",
    "tt": "tt", "af": "af", "oc": "oc", "nds": "nds", "ky": "ky", "ast": "ast", "tl": "tl",
    "is": "is", "ia": "ia", "si": "si", "gu": "gu", "km": "km", "br": "br", "ba": "ba",
    "uz": "uz", "bo": "bo", "pa": "pa", "vo": "vo", "als": "als", "ne": "ne", "cy": "cy",
    "jbo": "jbo", "fy": "fy", "mn": "mn", "lb": "lb", "ce": "ce", "ug": "ug", "tg": "tg",
    "sco": "sco", "sa": "sa", "cv": "cv", "jv": "jv", "min": "min", "io": "io", "or": "or",
    "as": "as", "new": "new", "ga": "ga", "mg": "mg", "an": "an", "ckb": "ckb", "sw": "sw",
    "bar": "bar", "lmo": "lmo", "yi": "yi", "arz": "arz", "mhr": "mhr", "azb": "azb",
    "sah": "sah", "pnb": "pnb", "su": "su", "bpy": "bpy", "pms": "pms", "ilo": "ilo",
    "wuu": "zh",  # merged, see module docstring
    "ku": "ku", "ps": "ps", "ie": "ie", "xmf": "xmf",
    "yue": "zh",  # Cantonese: Wikipedia zh_yue, merged into zh by MetaCLIP 2
    "gom": "gom", "li": "li", "mwl": "mwl", "kw": "kw", "sd": "sd", "hsb": "hsb",
    "scn": "scn", "gd": "gd", "pam": "pam", "bh": "bh", "mai": "mai", "vec": "vec",
    "mt": "mt", "dv": "dv", "wa": "wa", "mzn": "mzn", "am": "am", "qu": "qu", "eml": "eml",
    "cbk": "cbk", "tk": "tk", "rm": "rm", "os": "os", "vls": "vls", "yo": "yo", "lo": "lo",
    "lez": "lez", "so": "so", "myv": "myv", "diq": "diq", "mrj": "mrj", "dsb": "dsb",
    "frr": "frr", "ht": "ht", "gn": "gn", "bxr": "bxr", "kv": "kv", "sc": "sc", "nah": "nah",
    "krc": "krc", "bcl": "bcl", "nap": "nap", "gv": "gv", "av": "av", "rue": "rue",
    "xal": "xal", "pfl": "pfl", "dty": "dty", "hif": "hif", "co": "co",
    "lrc": "fa",  # Northern Luri has no Wikipedia; nearest is Persian
    "vep": "vep", "tyv": "tyv",
}

# Wikipedia dump codes whose text feeds another metadata language (MetaCLIP 2's variant merge).
WIKI_MERGES: dict[str, str] = {
    "zh_yue": "zh",
    "zh_classical": "zh",
    "zh_min_nan": "zh",
    "wuu": "zh",
    "be_tarask": "be",
    "nds_nl": "nds",
    "cbk_zam": "cbk",
}

# Languages written without spaces between words: unigrams/bigrams need a word segmenter
# (or character tokens). Includes Wikipedia variant codes so metadata builders can use it too.
NO_SPACE_LANGS: frozenset[str] = frozenset(
    {
        "zh", "ja", "th", "km", "lo", "my", "bo", "dz",
        "wuu", "yue", "gan", "zh_yue", "zh_classical",  # Chinese scripts
        "shn", "mnw", "blk",  # Shan, Mon, Pa'O: Myanmar script, no spaces
        "ryu",  # Okinawan (kana/kanji), as in MetaCLIP 2
    }
)

# ISO 639-3 (and 639-2/5 macro) code -> metadata language. Covers the ISO codes of all lid.176
# languages (both macrolanguage and main individual codes, as used by GlotLID / NLLB labels),
# the Open Multilingual Wordnet and CLDR wordnet files and the Tatoeba test set. Codes of
# languages with their own Wikipedia map to it even when lid.176 does not know them (`kab`).
ISO3_TO_LANG: dict[str, str] = {
    # lid.176 languages
    "eng": "en", "rus": "ru", "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "ita": "it",
    "jpn": "ja", "spa": "es", "ceb": "ceb", "tur": "tr", "por": "pt", "ukr": "uk", "epo": "eo",
    "pol": "pl", "swe": "sv", "nld": "nl", "dut": "nl", "heb": "he", "zho": "zh", "chi": "zh",
    "cmn": "zh", "hun": "hu", "ara": "ar", "arb": "ar", "cat": "ca", "fin": "fi", "ces": "cs",
    "cze": "cs", "fas": "fa", "per": "fa", "pes": "fa", "prs": "fa", "srp": "sr", "ell": "el",
    "gre": "el", "vie": "vi", "bul": "bg", "kor": "ko", "nor": "no", "nob": "no", "mkd": "mk",
    "mac": "mk", "ron": "ro", "rum": "ro", "ind": "id", "tha": "th", "hye": "hy", "arm": "hy",
    "dan": "da", "tam": "ta", "hin": "hi", "hrv": "hr", "hbs": "sh", "bel": "be", "kat": "ka",
    "geo": "ka", "tel": "te", "kaz": "kk", "war": "war", "lit": "lt", "glg": "gl", "slk": "sk",
    "slo": "sk", "ben": "bn", "eus": "eu", "baq": "eu", "slv": "sl", "kan": "kn", "mal": "ml",
    "mar": "mr", "est": "et", "ekk": "et", "aze": "az", "azj": "az", "msa": "ms", "may": "ms",
    "zsm": "ms", "sqi": "sq", "alb": "sq", "als": "sq", "aln": "sq", "lat": "la", "bos": "bs",
    "nno": "nn", "urd": "ur", "lav": "lv", "lvs": "lv", "mya": "my", "bur": "my", "tat": "tt",
    "afr": "af", "oci": "oc", "nds": "nds", "kir": "ky", "ast": "ast", "tgl": "tl", "fil": "tl",
    "isl": "is", "ice": "is", "ina": "ia", "sin": "si", "guj": "gu", "khm": "km", "bre": "br",
    "bak": "ba", "uzb": "uz", "uzn": "uz", "bod": "bo", "tib": "bo", "pan": "pa", "vol": "vo",
    "gsw": "als", "nep": "ne", "npi": "ne", "cym": "cy", "wel": "cy", "jbo": "jbo", "fry": "fy",
    "mon": "mn", "khk": "mn", "ltz": "lb", "che": "ce", "uig": "ug", "tgk": "tg", "sco": "sco",
    "san": "sa", "chv": "cv", "jav": "jv", "min": "min", "ido": "io", "ori": "or", "ory": "or",
    "asm": "as", "new": "new", "gle": "ga", "mlg": "mg", "plt": "mg", "arg": "an", "ckb": "ckb",
    "swa": "sw", "swh": "sw", "bar": "bar", "lmo": "lmo", "yid": "yi", "ydd": "yi", "arz": "arz",
    "mhr": "mhr", "chm": "mhr", "azb": "azb", "sah": "sah", "pnb": "pnb", "sun": "su",
    "bpy": "bpy", "pms": "pms", "ilo": "ilo", "wuu": "zh", "kur": "ku", "kmr": "ku", "pus": "ps",
    "pbt": "ps", "pbu": "ps", "ile": "ie", "xmf": "xmf", "yue": "zh", "gom": "gom", "kok": "gom",
    "lim": "li", "mwl": "mwl", "cor": "kw", "snd": "sd", "hsb": "hsb", "scn": "scn", "gla": "gd",
    "pam": "pam", "bho": "bh", "bih": "bh", "mai": "mai", "vec": "vec", "mlt": "mt", "div": "dv",
    "wln": "wa", "mzn": "mzn", "amh": "am", "que": "qu", "quy": "qu", "quz": "qu", "egl": "eml",
    "eml": "eml", "rgn": "eml", "cbk": "cbk", "tuk": "tk", "roh": "rm", "oss": "os", "vls": "vls",
    "yor": "yo", "lao": "lo", "lez": "lez", "som": "so", "myv": "myv", "diq": "diq", "zza": "diq",
    "mrj": "mrj", "dsb": "dsb", "frr": "frr", "hat": "ht", "grn": "gn", "gug": "gn", "bxr": "bxr",
    "bua": "bxr", "kom": "kv", "kpv": "kv", "srd": "sc", "sro": "sc", "src": "sc", "nah": "nah",
    "nhe": "nah", "nhw": "nah", "nch": "nah", "krc": "krc", "bcl": "bcl", "nap": "nap",
    "glv": "gv", "ava": "av", "rue": "rue", "xal": "xal", "pfl": "pfl", "dty": "dty", "hif": "hif",
    "cos": "co", "lrc": "fa", "vep": "vep", "tyv": "tyv",
    # Chinese varieties MetaCLIP 2 merges into zh (zh_classical, zh_min_nan)
    "lzh": "zh", "nan": "zh",
    # languages with a Wikipedia of their own that lid.176 does not know
    "kab": "kab", "sat": "sat", "lij": "lij", "shi": "shi", "aka": "tw", "twi": "tw",
    "bam": "bm", "dzo": "dz", "ewe": "ee", "fao": "fo", "ful": "ff", "fuv": "ff", "hau": "ha",
    "ibo": "ig", "kal": "kl", "kik": "ki", "kin": "rw", "lin": "ln", "lug": "lg", "orm": "om",
    "gaz": "om", "run": "rn", "sag": "sg", "sme": "se", "sna": "sn", "sot": "st", "ssw": "ss",
    "tir": "ti", "ton": "to", "tsn": "tn", "tso": "ts", "ven": "ve", "xho": "xh", "zul": "zu",
    "nso": "nso", "wol": "wo", "mri": "mi", "smo": "sm", "haw": "haw", "fij": "fj", "nya": "ny",
    "abk": "ab", "ady": "ady", "kbd": "kbd", "udm": "udm", "koi": "koi", "mdf": "mdf",
    "olo": "olo", "hak": "hak", "gan": "gan", "cdo": "cdo", "tet": "tet", "ace": "ace",
    "ban": "ban", "bjn": "bjn", "bug": "bug", "mad": "mad", "fur": "fur", "lad": "lad",
    "crh": "crh", "gag": "gag", "kaa": "kaa", "szl": "szl", "csb": "csb", "ltg": "ltg",
    "sgs": "bat_smg", "vro": "fiu_vro", "rup": "roa_rup", "ext": "ext", "frp": "frp",
    "pcd": "pcd", "nrm": "nrm", "pap": "pap", "srn": "srn", "tpi": "tpi", "bis": "bi",
    "got": "got", "ang": "ang", "arc": "arc", "chr": "chr", "iku": "iu", "ipk": "ik",
    "nav": "nv", "cre": "cr", "zha": "za", "zea": "zea", "stq": "stq", "ksh": "ksh",
    "pdc": "pdc", "hyw": "hyw", "glk": "glk", "skr": "skr", "ary": "ary", "zgh": "zgh",
    "nqo": "nqo", "mni": "mni", "shn": "shn", "mnw": "mnw", "blk": "blk", "tcy": "tcy",
    "awa": "awa", "anp": "anp", "pli": "pi", "kas": "ks", "tly": "tly", "lfn": "lfn",
    "nov": "nov", "avk": "avk", "tum": "tum", "din": "din", "dag": "dag", "gur": "gur",
    "fon": "fon", "guw": "guw", "kbp": "kbp", "pcm": "pcm", "tzm": "zgh",
    # no Wikipedia of their own -> nearest one (see ISO3_APPROXIMATE)
    "fkv": "fi", "krl": "olo", "izh": "fi", "grc": "el", "hbo": "he", "arq": "ar",
    "acm": "ar", "apc": "ar", "ajp": "ar", "aeb": "ar", "ars": "ar", "acq": "ar",
    # no Wikipedia and no close written standard -> other
    "ber": OTHER, "shy": OTHER, "tmr": OTHER, "phn": OTHER, "oar": OTHER, "jpa": OTHER,
    "hoc": OTHER, "syl": OTHER, "aar": OTHER, "iii": OTHER, "lub": OTHER, "nbl": OTHER, "nde": OTHER,
    "und": OTHER, "zxx": OTHER, "mul": OTHER,
}

# ISO codes mapped to a *nearest* metadata language (dialects/historical stages without a
# Wikipedia): not counted as "known" when evaluating an LID model on labelled data.
ISO3_APPROXIMATE: frozenset[str] = frozenset(
    {"fkv", "krl", "izh", "grc", "hbo", "arq", "acm", "apc", "ajp", "aeb", "ars", "acq", "lrc"}
)


def strip_label(label: str) -> str:
    """'__label__en' -> 'en'; labels without the fastText prefix are returned unchanged."""
    return label[len(LABEL_PREFIX):] if label.startswith(LABEL_PREFIX) else label


def iso3_to_lang(code: str) -> str:
    """Metadata language of an ISO 639-3 code ('cmn' -> 'zh', 'nob' -> 'no'); unknown -> 'other'.

    Accepts 'xxx_Scrp' (GlotLID/NLLB style, the script is ignored) and is case-insensitive.
    """
    if not isinstance(code, str):
        return OTHER
    base = code.split("_", 1)[0].split("-", 1)[0].strip().lower()
    return ISO3_TO_LANG.get(base, OTHER)


@lru_cache(maxsize=4096)
def to_metadata_lang(label: str) -> str:
    """Metadata language of an LID label, with or without '__label__'; unknown -> 'other'.

    lid.176 labels ('en', 'yue', 'als') go through LID_TO_LANG; GlotLID/NLLB labels
    ('eng_Latn', 'zho_Hans') through ISO3_TO_LANG; a bare ISO 639-3 code is tried last.
    """
    if not isinstance(label, str):
        return OTHER
    code = strip_label(label)
    if "_" in code:  # 'xxx_Scrp' style of GlotLID / NLLB LID-218
        return iso3_to_lang(code)
    if code in LID_TO_LANG:
        return LID_TO_LANG[code]
    if len(code) == 3:
        return iso3_to_lang(code)
    return OTHER


def wiki_to_lang(wiki_code: str) -> str:
    """Metadata language fed by a Wikipedia dump code ('zh_yue' -> 'zh', 'de' -> 'de')."""
    code = wiki_code.strip().lower().replace("-", "_")
    return WIKI_MERGES.get(code, code)


def metadata_languages() -> list[str]:
    """Sorted metadata languages that lid.176 can produce (without 'other')."""
    return sorted(set(LID_TO_LANG.values()))


def is_no_space_lang(lang: str) -> bool:
    return lang in NO_SPACE_LANGS
