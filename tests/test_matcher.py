"""curation.matcher: Aho-Corasick matching equals a brute-force substring search (property tests)."""

from __future__ import annotations

import os
import pickle
import tempfile

import ahocorasick
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.matcher import Matcher, build_automaton, load_automaton, match_batch, match_ids, save_automaton
from curation.text import pad_entry, spacing

PROPS = settings(derandomize=True, max_examples=250, deadline=None)

# Tiny alphabets per script: generated entries occur in generated texts often.
LATIN, CYRILLIC, GREEK = "abAB", "абЖ", "αβΩ"
HAN, KANA, THAI = "中文東", "かカナ", "กขไ"
PUNCT = ",.;:?!`-()、。"
SPACE = "  \t\n"
ALL = LATIN + CYRILLIC + GREEK + HAN + KANA + THAI + PUNCT + SPACE


def words(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=0, max_size=max_size)


# One script per entry or text most of the time (as real metadata is), all mixed sometimes.
_script_alphabets = [LATIN + PUNCT + SPACE, CYRILLIC + SPACE + ".,", GREEK + SPACE, HAN + KANA + PUNCT + " ",
                     THAI + " ", ALL]
entries_st = st.lists(st.one_of(*(words(a, 5) for a in _script_alphabets)), min_size=0, max_size=25)
texts_st = st.lists(st.one_of(*(words(a, 30) for a in _script_alphabets)), min_size=1, max_size=8)


def brute_force(entries: list[str], text: str) -> list[int]:
    """Ids of entries whose padded key is a substring of spacing(text); the first id of a key wins."""
    spaced = spacing(text)
    first_id: dict[str, int] = {}
    for i, e in enumerate(entries):
        first_id.setdefault(pad_entry(e), i)
    return sorted(i for key, i in first_id.items() if key and key in spaced)


def as_list(ids: np.ndarray) -> list[int]:
    assert ids.dtype == np.int32
    return ids.tolist()


@PROPS
@given(entries_st, texts_st)
def test_matches_equal_brute_force(entries, texts):
    # Texts are built from entries too so matches are frequent, not only by chance.
    texts = texts + [" ".join(entries[:3]), "".join(entries[-3:]), f"x{''.join(entries[:2])}y"]
    automaton = build_automaton(entries)
    expected = [brute_force(entries, t) for t in texts]
    assert [as_list(match_ids(automaton, t)) for t in texts] == expected
    assert [as_list(a) for a in match_batch(automaton, texts)] == expected
    assert [as_list(a) for a in match_batch(automaton, iter(texts))] == expected  # any iterable
    assert [as_list(a) for a in Matcher(entries).match(texts)] == expected
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "a.ac")
        save_automaton(automaton, path)
        loaded = load_automaton(path)
    assert [as_list(a) for a in match_batch(loaded, texts)] == expected


def test_examples():
    entries = ["cat", "a cat", "中文", "U.S.", "cat", " cat ", "", "...", "ไทย", "東京"]
    m = Matcher(entries)
    got = [ids.tolist() for ids in m.match([
        "A cat and a cat.",  # "cat" (id 0, not its duplicates 4/5), "a cat" (1)
        "concatenate",  # no Latin match inside a word
        "我会说中文吗",  # CJK matches inside a run of text
        "made in the U.S.!",
        "wait...",
        "ภาษาไทยง่าย",
        "東京タワー cat",
        "",
    ])]
    assert got == [[0, 1], [], [2], [3], [7], [8], [0, 9], []]


def test_duplicate_and_colliding_keys_keep_first_id():
    # "x.y", " x.y" and "x.y\n" pad to the same key: only the first id is stored.
    entries = ["zz", "x.y", "x . y", " x.y", "x\ty", "x.y\n", "zz"]
    automaton = build_automaton(entries)
    assert len(automaton) == 4
    assert match_ids(automaton, "see x.y now and x y, zz").tolist() == [0, 1, 4]
    assert match_ids(automaton, "x . y").tolist() == [2]


def test_empty_automaton_matches_nothing_and_round_trips(tmp_path):
    for entries in ([], ["", "  ", "\n"]):
        automaton = build_automaton(entries)
        assert match_ids(automaton, "anything at all").tolist() == []
        assert [a.tolist() for a in match_batch(automaton, ["a", "b"])] == [[], []]
        save_automaton(automaton, tmp_path / "e.ac")
        loaded = load_automaton(tmp_path / "e.ac")
        assert match_batch(loaded, ["a"])[0].tolist() == []


def test_save_is_atomic_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.ac"
    save_automaton(build_automaton(["one"]), path)
    save_automaton(build_automaton(["two", "one"]), path)  # replaces
    assert match_ids(load_automaton(path), "one").tolist() == [1]
    assert sorted(os.listdir(tmp_path)) == ["a.ac"]


def test_load_refuses_non_int_automata(tmp_path):
    pickled = ahocorasick.Automaton(ahocorasick.STORE_ANY)
    pickled.add_word(" cat ", ("payload", 1))
    pickled.make_automaton()
    pickled.save(str(tmp_path / "any.ac"), pickle.dumps)
    with pytest.raises(ValueError, match="pickled"):
        load_automaton(tmp_path / "any.ac")

    lengths = ahocorasick.Automaton(ahocorasick.STORE_LENGTH)
    lengths.add_word(" cat ")
    lengths.make_automaton()
    lengths.save(str(tmp_path / "len.ac"))
    with pytest.raises(ValueError, match="does not store ints"):
        load_automaton(tmp_path / "len.ac")

    trie = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    trie.add_word(" cat ", 0)
    trie.save(str(tmp_path / "trie.ac"))
    with pytest.raises(ValueError, match="not a finished automaton"):
        load_automaton(tmp_path / "trie.ac")

    (tmp_path / "junk.ac").write_bytes(b"\x00junk" * 40)
    with pytest.raises(ValueError, match="junk.ac"):
        load_automaton(tmp_path / "junk.ac")
    good = tmp_path / "good.ac"
    save_automaton(build_automaton(["cat"]), good)
    (tmp_path / "cut.ac").write_bytes(good.read_bytes()[:20])
    with pytest.raises(ValueError, match="cut.ac"):
        load_automaton(tmp_path / "cut.ac")
    with pytest.raises(FileNotFoundError, match="missing.ac"):
        load_automaton(tmp_path / "missing.ac")


def test_save_refuses_non_int_automaton(tmp_path):
    a = ahocorasick.Automaton(ahocorasick.STORE_ANY)
    a.add_word("x", object())
    a.make_automaton()
    with pytest.raises(ValueError, match="STORE_INTS"):
        save_automaton(a, tmp_path / "x.ac")
    assert not os.listdir(tmp_path)
