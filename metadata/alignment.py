"""LID alignment: which metadata language a Wikipedia dump or a wordnet file feeds.

Curation looks up the metadata of the language that LID assigns to a text, so metadata is
keyed by the LID model's languages (`curation.languages`): Wikipedia variants merge into their
base language (zh_yue, zh_classical -> zh; be_tarask -> be; ...), and a Wikipedia or wordnet
language that the LID model never outputs feeds `other` (the metadata used for texts whose
LID label maps nowhere). Consequence, by design: adding such a language changes the ids of
`other`, never of any LID language.

The build selects and caps candidates per *unit*, not per metadata language: a unit is one
Wikipedia code (`zh`, `zh_yue`, `kab`, `simple`, ...; an OMW file's language counts as the
code of its language). MetaCLIP 2 builds one metadata list per Wikipedia code and only then
unions the codes of a language (metadata/align_lid_to_wiki.py), so zh_yue's caps are zh_yue's
own and every code that feeds `other` is capped on its own before the union.
"""

from __future__ import annotations

from functools import lru_cache

from curation.languages import OTHER, is_no_space_lang, iso3_to_lang, metadata_languages, wiki_to_lang


@lru_cache(maxsize=1)
def _lid_langs() -> frozenset[str]:
    return frozenset(metadata_languages())


def lang_for_wiki(wiki_code: str, align_to_lid: bool = True) -> str:
    """Metadata language of a Wikipedia code ('zh-yue' -> 'zh', 'kab' -> 'other')."""
    lang = wiki_to_lang(wiki_code)
    if align_to_lid and lang not in _lid_langs():
        return OTHER
    return lang


def lang_for_iso3(code: str, align_to_lid: bool = True) -> str:
    """Metadata language of an ISO 639-3 code from an OMW file ('cmn' -> 'zh', 'aka' -> 'other')."""
    lang = iso3_to_lang(code)
    if align_to_lid and lang not in _lid_langs():
        return OTHER
    return lang


def wiki_unit(wiki_code: str) -> str:
    """The unit of a Wikipedia code: the code itself, lower case, '-' as '_' ('zh-yue' -> 'zh_yue')."""
    return wiki_code.strip().lower().replace("-", "_")


def unit_for_iso3(code: str) -> str:
    """The unit of an OMW file's ISO 639-3 code: its language's Wikipedia code ('cmn' -> 'zh', 'aka' -> 'ak')."""
    return iso3_to_lang(code)


def lang_for_unit(unit: str, align_to_lid: bool = True) -> str:
    """Metadata language a unit feeds ('zh_yue' -> 'zh', 'kab' -> 'other')."""
    return lang_for_wiki(unit, align_to_lid)


def tokenizer_lang(unit: str, lang: str) -> str:
    """Whose tokenizer a unit's text uses: its metadata language's, unless that is `other` or the
    unit's own script is written without spaces (Okinawan `ryu` feeds `other` but needs no-space
    rules; `zh_yue` goes to `zh` and its segmenter)."""
    if lang == OTHER or (is_no_space_lang(unit) and not is_no_space_lang(lang)):
        return unit
    return lang
