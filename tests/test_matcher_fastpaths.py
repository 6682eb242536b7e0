"""Fast paths of the curate hot loop give exactly the results of the plain per-item functions.

match_batch (one automaton pass over spacing_joined texts) vs match_ids per text,
spacing_joined vs spacing, urls.canonical_flags vs normalize_url, and
curation.inputs.table_pair_chunks vs normalize_url / clean_alt_text / image_uuid per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from curation import matcher
from curation.inputs import excerpt, table_pair_chunks
from curation.matcher import build_automaton, match_batch, match_ids
from curation.text import MAX_TEXT_CHARS, already_clean_mask, clean_alt_text, spacing, spacing_joined
from curation.urls import canonical_flags, image_uuid, normalize_url

PROPS = settings(derandomize=True, max_examples=300, deadline=None)

# Wrapped punctuation, tab/CR, non-BMP characters (emoji, CJK Ext B), no-space scripts.
ALPHABET = "abAB абЖ中文かカกข,.;:?!`-()\t\r 😀𠀀é"
texts_st = st.lists(st.text(alphabet=ALPHABET, max_size=30), min_size=0, max_size=12)
entries_st = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), min_size=0, max_size=20)


@PROPS
@given(texts_st)
def test_spacing_joined_equals_spacing_per_text(texts):
    joined = spacing_joined(texts)
    if not texts:
        assert joined is None
    else:
        assert joined == "\n".join(spacing(t) for t in texts)


def test_spacing_joined_refuses_newlines_and_non_str():
    assert spacing_joined(["a\nb", "c"]) is None
    assert spacing_joined(["a", 5]) is None  # type: ignore[list-item]


@PROPS
@given(entries_st, texts_st)
def test_match_batch_equals_match_ids(entries, texts):
    texts = texts + [" ".join(entries[:3]), "".join(entries[-3:]), f"x{''.join(entries[:2])}y"]
    automaton = build_automaton(entries)
    got = match_batch(automaton, texts)
    assert len(got) == len(texts)
    for text, ids in zip(texts, got, strict=True):
        assert ids.dtype == np.int32
        assert ids.tolist() == match_ids(automaton, text).tolist()


def test_match_batch_many_texts_and_fallbacks(monkeypatch):
    entries = ["cat", "dog", "a.b", "中文", "😀"]
    automaton = build_automaton(entries)
    texts = ["a cat and a dog", "a.b", "中文😀", "nothing", "", "cat\ndog", "dog, cat!"] * 5
    expected = [match_ids(automaton, t).tolist() for t in texts]
    assert [a.tolist() for a in match_batch(automaton, texts)] == expected  # "\n": per text
    monkeypatch.setattr(matcher, "_JOIN_TEXTS", 4)  # several passes
    clean = [t for t in texts if "\n" not in t]
    assert [a.tolist() for a in match_batch(automaton, iter(clean))] == [match_ids(automaton, t).tolist()
                                                                         for t in clean]


def test_match_batch_lone_surrogates():
    automaton = build_automaton(["cat"])
    texts = ["cat \ud800", "\udfff cat"]
    assert [a.tolist() for a in match_batch(automaton, texts)] == [[0], [0]]


URL_ALPHABET = "abcAZ09-._~!$&'()*+,;=:@/?#% \t\nä:"
urls_st = st.one_of(
    st.builds(lambda s, h, p: f"{s}://{h}/{p}", st.sampled_from(["http", "https", "HTTP", "ftp"]),
              st.sampled_from(["a.com", "A.com", "a.com:80", "a.com:8080", "a.com.", "xn--a.de", "ä.de"]),
              st.text(alphabet=URL_ALPHABET, max_size=20)),
    st.text(alphabet=URL_ALPHABET, max_size=20),
)


@PROPS
@given(st.lists(st.one_of(urls_st, st.none()), max_size=20))
def test_canonical_flags_imply_unchanged(urls):
    flags = canonical_flags(pa.array(urls, pa.string()))
    assert len(flags) == len(urls)
    for url, flag in zip(urls, flags, strict=True):
        if flag:
            assert normalize_url(url) == (url, None)
    long_url = "https://a.com/" + "x" * 3000
    assert canonical_flags(pa.array(["https://a.com/x", "https://a.com/x\n", long_url])).tolist() == [True, False, False]
    assert canonical_flags(pa.array([1, 2])).tolist() == [False, False]


@PROPS
@given(st.lists(st.one_of(st.none(), st.text(alphabet="ab ~!\x7f\x1f\t\n\x00.,", max_size=10),
                          st.text(alphabet="ab é\u0301\u00a0\u200b\u200e\ufffd", max_size=10)), max_size=30))
def test_already_clean_mask_is_exact_for_ascii_and_safe_otherwise(texts):
    mask = already_clean_mask(pa.array(texts, pa.string()), texts)
    assert mask.dtype == bool and len(mask) == len(texts)
    for text, flag in zip(texts, mask.tolist(), strict=True):
        unchanged = clean_alt_text(text) == (text, None)
        if text is not None and text.isascii():
            assert flag == unchanged  # decided in C: exact
        elif flag:
            assert unchanged  # the others: True only where cleaning changes nothing
    too_long = "a" * (MAX_TEXT_CHARS + 1)
    assert already_clean_mask(pa.array([too_long, "é" * (MAX_TEXT_CHARS + 1)]), [too_long, "é" * (MAX_TEXT_CHARS + 1)]
                              ).tolist() == [False, False]


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.one_of(urls_st, st.none()),
                          st.one_of(st.none(), st.text(alphabet="ab é\u0301\t\n\x00 .,\ufffd", max_size=12))),
                max_size=30))
def test_table_pair_chunks_equal_per_row_functions(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("t") / "t.parquet"
    pq.write_table(pa.table({"URL": pa.array([r[0] for r in rows], pa.string()),
                             "TEXT": pa.array([r[1] for r in rows], pa.string())}), path)
    uuids, urls, texts, rejects = [], [], [], []
    for url, text in rows:
        norm, reason = normalize_url(url)
        if norm is None:
            rejects.append((reason, excerpt(url)))
            continue
        clean, reason = clean_alt_text(text)
        if clean is None:
            rejects.append((reason, excerpt(text)))
            continue
        uuids.append(image_uuid(norm))
        urls.append(norm)
        texts.append(clean)
    got = list(table_pair_chunks(str(path), "URL", "TEXT", chunk_rows=7))
    pairs = [row for chunk in got for row in chunk.rows()]
    assert [p["uuid"] for p in pairs] == uuids
    assert [p["url"] for p in pairs] == urls
    assert [p["text"] for p in pairs] == texts
    assert [t for chunk in got for t in chunk.texts] == texts  # the str copy LID and matching read
    assert [r for chunk in got for r in chunk.rejects] == rejects
    assert sum(chunk.records for chunk in got) == len(rows)


@PROPS
@given(st.lists(st.text(alphabet="a é\u0301\u0327e\u1100\u1161\u00a0\u200b\ufffd\u212b", max_size=6), max_size=80))
def test_clean_runs_equal_per_text_checks(texts):
    """Deciding whole space-joined runs (combining marks at the edges, jamo, NBSP...) is exact."""
    from curation.text import _already_clean, _mark_clean

    out = np.zeros(len(texts), dtype=bool)
    _mark_clean(texts, 0, len(texts), out)
    assert out.tolist() == [_already_clean(t) for t in texts]
