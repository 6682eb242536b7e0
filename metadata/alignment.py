"""LID alignment: which metadata language a Wikipedia dump or a wordnet file feeds.

Curation looks up the metadata of the language that LID assigns to a text, so metadata is
keyed by the LID model's languages (`curation.languages`): Wikipedia variants merge into their
base language (zh_yue, zh_classical -> zh; be_tarask -> be; ...), and a Wikipedia or wordnet
language that the LID model never outputs feeds `other` (the metadata used for texts whose
LID label maps nowhere). Consequence, by design: adding such a language changes the ids of
`other`, never of any LID language.
"""

from __future__ import annotations

from functools import lru_cache

from curation.languages import OTHER, iso3_to_lang, metadata_languages, wiki_to_lang


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
