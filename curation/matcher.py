"""Aho-Corasick matching of spaced texts against padded metadata entries.

The automaton stores ints (value = entry id) so it saves and loads with pyahocorasick's own
binary format, never pickle. Entries are added in id order; when two entries pad to the same
key the smaller id wins, so ids stay stable and matching is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from operator import itemgetter

import ahocorasick
import numpy as np

from curation.text import pad_entry, spacing

EMPTY_IDS = np.zeros(0, dtype=np.int32)
_value = itemgetter(1)  # (end_index, entry_id) -> entry_id


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
    """Write the automaton in pyahocorasick's binary format (atomically via a temp file).

    Int-storing automata are saved without a serializer (pyahocorasick rejects one for them).
    """
    if automaton.store != ahocorasick.STORE_INTS:
        raise ValueError("only STORE_INTS automata are saved (values must be entry ids, never pickled)")
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        automaton.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _RefusedValue(Exception):
    pass


def _refuse_value(*_args):
    raise _RefusedValue


def load_automaton(path: str | os.PathLike) -> ahocorasick.Automaton:
    """Load an automaton saved by save_automaton; anything but an int-storing one is refused.

    The deserializer refuses every call, so a file holding pickled values is rejected before
    any of them is unpickled. An empty automaton (no usable entries) loads as such and
    matches nothing.
    """
    try:
        automaton = ahocorasick.load(os.fspath(path), _refuse_value)
    except _RefusedValue:
        raise ValueError(f"{path}: automaton stores arbitrary (pickled) values, not ints; refusing it") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"no such automaton file: {path}") from None
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a readable pyahocorasick automaton ({exc})") from exc
    if automaton.store != ahocorasick.STORE_INTS:
        raise ValueError(f"{path}: automaton does not store ints; refusing it")
    if automaton.kind == ahocorasick.TRIE:
        raise ValueError(f"{path}: not a finished automaton (make_automaton was not called)")
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
    """match_ids for each text of a batch.

    The ids of the whole batch go into one int32 array and each text gets a slice (view) of
    it: one numpy conversion per batch instead of one per text (~20% faster on short texts).
    """
    if automaton.kind != ahocorasick.AHOCORASICK:
        return [EMPTY_IDS for _ in texts]
    it = automaton.iter
    flat: list[int] = []
    ends: list[int] = []
    extend, add_end = flat.extend, ends.append
    for text in texts:
        found = set(map(_value, it(spacing(text))))
        if found:
            extend(sorted(found))
        add_end(len(flat))
    if not flat:
        return [EMPTY_IDS] * len(ends)
    ids = np.array(flat, dtype=np.int32)
    out = []
    start = 0
    for end in ends:
        out.append(ids[start:end] if end > start else EMPTY_IDS)
        start = end
    return out


class Matcher:
    """Entries of one language plus their automaton; the unit the curate job loads per language."""

    def __init__(self, entries: Sequence[str], automaton: ahocorasick.Automaton | None = None):
        self.entries = list(entries)
        self.automaton = automaton if automaton is not None else build_automaton(self.entries)

    def match(self, texts: Iterable[str]) -> list[np.ndarray]:
        return match_batch(self.automaton, texts)
