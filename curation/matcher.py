"""Aho-Corasick matching of spaced texts against padded metadata entries.

The automaton stores ints (value = entry id) so it saves and loads with pyahocorasick's own
binary format, never pickle. Entries are added in id order; when two entries pad to the same
key the smaller id wins, so ids stay stable and matching is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import ahocorasick
import numpy as np

from curation.text import pad_entry, spacing

EMPTY_IDS = np.zeros(0, dtype=np.int32)


def _no_pickle(*_args):
    raise RuntimeError("automata store ints; a (de)serializer should never be called")


def build_automaton(entries: Sequence[str]) -> ahocorasick.Automaton:
    """Automaton over `entries` where entry i gets id i; empty keys are skipped."""
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for entry_id, entry in enumerate(entries):
        key = pad_entry(entry)
        if key and not automaton.exists(key):
            automaton.add_word(key, entry_id)
    automaton.make_automaton()
    return automaton


def save_automaton(automaton: ahocorasick.Automaton, path: str | os.PathLike) -> None:
    """Write the automaton in pyahocorasick's binary format (atomically via a temp file)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    automaton.save(tmp, _no_pickle)
    os.replace(tmp, path)


def load_automaton(path: str | os.PathLike) -> ahocorasick.Automaton:
    automaton = ahocorasick.load(os.fspath(path), _no_pickle)
    if automaton.kind != ahocorasick.AHOCORASICK:
        raise ValueError(f"{path}: not a finished automaton (kind={automaton.kind})")
    if automaton.store != ahocorasick.STORE_INTS:
        raise ValueError(f"{path}: automaton does not store ints; refusing it")
    return automaton


def match_ids(automaton: ahocorasick.Automaton, text: str) -> np.ndarray:
    """Sorted, unique int32 ids of entries found in spacing(text)."""
    if automaton.kind != ahocorasick.AHOCORASICK:  # empty automaton: nothing to match
        return EMPTY_IDS
    found = {value for _end, value in automaton.iter(spacing(text))}
    if not found:
        return EMPTY_IDS
    return np.fromiter(sorted(found), dtype=np.int32, count=len(found))


def match_batch(automaton: ahocorasick.Automaton, texts: Iterable[str]) -> list[np.ndarray]:
    """match_ids for each text of a batch."""
    if automaton.kind != ahocorasick.AHOCORASICK:
        return [EMPTY_IDS for _ in texts]
    out = []
    it = automaton.iter
    for text in texts:
        found = {value for _end, value in it(spacing(text))}
        out.append(np.fromiter(sorted(found), dtype=np.int32, count=len(found)) if found else EMPTY_IDS)
    return out


class Matcher:
    """Entries of one language plus their automaton; the unit the curate job loads per language."""

    def __init__(self, entries: Sequence[str], automaton: ahocorasick.Automaton | None = None):
        self.entries = list(entries)
        self.automaton = automaton if automaton is not None else build_automaton(self.entries)

    def match(self, texts: Iterable[str]) -> list[np.ndarray]:
        return match_batch(self.automaton, texts)
