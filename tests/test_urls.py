"""URL normalisation and image uuids (curation.urls)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.urls import MAX_URL_CHARS, image_uuid, normalize_url

PAGE = "https://Example.com:443/dir/page.html?x=1#top"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("img/a.png", "https://example.com/dir/img/a.png"),
        ("/img/a.png", "https://example.com/img/a.png"),
        ("../up.png", "https://example.com/up.png"),
        ("../../../../up.png", "https://example.com/up.png"),
        ("./a.png", "https://example.com/dir/a.png"),
        ("?page=2", "https://example.com/dir/page.html?page=2"),
        ("//CDN.Example.COM/x.jpg", "https://cdn.example.com/x.jpg"),
        ("//cdn.example.com:443/x.jpg", "https://cdn.example.com/x.jpg"),
        ("HTTP://WWW.Example.COM:80/A.JPG", "http://www.example.com/A.JPG"),
        ("http://example.com:8080/a.jpg", "http://example.com:8080/a.jpg"),
        ("https://example.com:80/a.jpg", "https://example.com:80/a.jpg"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com./a.jpg", "https://example.com/a.jpg"),
        ("  https://example.com/a.jpg \n", "https://example.com/a.jpg"),
        ("https://exa\nmple.com/a\t.jpg", "https://example.com/a.jpg"),
        ("https://example.com/a.jpg#frag", "https://example.com/a.jpg"),
        ("https://example.com/a/./b/../c.jpg", "https://example.com/a/c.jpg"),
        ("https://example.com/a b.jpg", "https://example.com/a%20b.jpg"),
        ("https://example.com/图片.jpg", "https://example.com/%E5%9B%BE%E7%89%87.jpg"),
        ("https://example.com/%e5%9b%be.jpg", "https://example.com/%E5%9B%BE.jpg"),
        ("https://example.com/a.jpg?w=100&h=50", "https://example.com/a.jpg?w=100&h=50"),
        ("https://bücher.de/a.jpg", "https://xn--bcher-kva.de/a.jpg"),
        ("https://ПРИМЕР.рф/a.jpg", "https://xn--e1afmkfd.xn--p1ai/a.jpg"),
        ("https://straße.de/a.jpg", "https://xn--strae-oqa.de/a.jpg"),
        ("http://[::1]:8080/x.jpg", "http://[::1]:8080/x.jpg"),
        ("http://user:pw@host.com/x.jpg", "http://user:pw@host.com/x.jpg"),
    ],
)
def test_normalize(url, expected):
    assert normalize_url(url, PAGE) == (expected, None)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:void(0)", "unsupported_scheme"),
        ("JavaScript:alert(1)", "unsupported_scheme"),
        ("mailto:a@b.com", "unsupported_scheme"),
        ("ftp://example.com/a.jpg", "unsupported_scheme"),
        ("about:blank", "unsupported_scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "data_uri"),
        (" DATA:image/gif;base64,R0lGOD", "data_uri"),
        ("data:image/png;base64," + "A" * 100_000, "data_uri"),
        ("", "invalid_url"),
        ("   ", "invalid_url"),
        ("http:///a.jpg", "invalid_url"),
        ("http://host:port/a.jpg", "invalid_url"),
        ("http://host:99999/a.jpg", "invalid_url"),
        ("http://exa mple.com/a.jpg", "invalid_url"),
        ("https://example.com/" + "a" * MAX_URL_CHARS, "url_too_long"),
        ("a" * 10_000, "url_too_long"),
        (None, "invalid_url"),
        (42, "invalid_url"),
    ],
)
def test_rejects(url, reason):
    assert normalize_url(url, PAGE) == (None, reason)


def test_relative_needs_a_usable_base():
    assert normalize_url("img/a.png") == (None, "invalid_url")
    assert normalize_url("//cdn.example.com/a.png") == (None, "invalid_url")
    assert normalize_url("img/a.png", "javascript:void(0)") == (None, "invalid_url")
    # an absolute URL needs no base
    assert normalize_url("https://example.com/a.png") == ("https://example.com/a.png", None)
    # protocol-relative takes the page's scheme
    assert normalize_url("//cdn.example.com/a.png", "http://example.com/") == ("http://cdn.example.com/a.png", None)


def test_spellings_of_one_image_share_a_uuid():
    spellings = [
        ("/images/cat.jpg", "https://www.example.de/de/page.html"),
        ("../images/cat.jpg", "https://www.example.de/de/page.html"),
        ("//www.example.de/images/cat.jpg", "https://www.example.de/x"),
        ("HTTPS://WWW.EXAMPLE.DE:443/images/cat.jpg#main", None),
        (" https://www.example.de/images/./cat.jpg ", None),
    ]
    uuids = {image_uuid(normalize_url(u, b)[0]) for u, b in spellings}
    assert len(uuids) == 1


def test_image_uuid_is_metaclip_sha224_prefix():
    url = "https://example.com/a.jpg"
    assert image_uuid(url) == hashlib.sha224(url.encode("utf-8")).hexdigest()[:24]
    assert image_uuid(url) == "830ea075166a60fac7650ab1"  # pinned: uuids must never change
    assert image_uuid("https://example.com/图.jpg") != image_uuid("https://example.com/a.jpg")
    assert all(c in "0123456789abcdef" for c in image_uuid(url))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.sampled_from([None, PAGE, "http://h.example/a/b/", "mailto:x"]))
def test_never_raises_and_is_idempotent(url, base):
    result, reason = normalize_url(url, base)
    assert (result is None) != (reason is None)
    if result is not None:
        assert result.startswith(("http://", "https://"))
        assert len(result) <= MAX_URL_CHARS
        assert result.isascii() and "#" not in result
        assert normalize_url(result) == (result, None)


_PIECES = st.sampled_from(
    list("aZ0/.:%@?#[]-_~!$&'()*+,;= é") + ["a.b", ":80", ":443", ":8080", ":0", ":99999", "/.", "/..", "//", ".com"]
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["http://", "https://", "HTTP://", ""]), st.lists(_PIECES, max_size=15).map("".join))
def test_fast_path_equals_full_normalisation(prefix, rest):
    from curation.urls import _normalize

    url = prefix + rest
    assert normalize_url(url) == _normalize(url, None)
