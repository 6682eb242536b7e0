"""Image URL normalisation and the image uuid (one image = one normalised URL = one uuid).

The same image is linked from many pages, often with relative or differently spelled URLs;
grouping its texts needs one canonical spelling. `normalize_url` applies, in order:

1. strip leading/trailing whitespace and remove embedded tab/CR/LF (as browsers do);
2. reject `data:` URIs (`data_uri`) before anything else: they carry the image inline;
3. resolve against the page URL (`base`): relative paths, `?query`, and protocol-relative
   `//host/x` (which takes the page's scheme); a relative URL without a usable base is
   `invalid_url`;
4. keep only http and https (`unsupported_scheme` for javascript:, mailto:, ftp:, ...);
5. lower-case scheme and host, IDNA-encode a non-ASCII host (UTS #46 non-transitional, as
   browsers do; IDNA 2003 for hosts IDNA 2008 refuses), drop a trailing dot of the host, drop the default port (80 for http, 443 for
   https), keep user info;
6. remove dot segments (`/a/./b/../c` -> `/a/c`), an empty path becomes `/`;
7. percent-encode characters that are not allowed raw in a URL (spaces, non-ASCII as UTF-8,
   quotes, ...) while leaving existing `%XX` escapes intact, and upper-case their hex digits;
8. drop the fragment (`#...`): it never changes the image fetched;
9. reject a result longer than 2048 characters (`url_too_long`).

Query parameter order and case of the path are kept: servers may treat them as meaningful.
`image_uuid` is the first 24 hex characters of sha224 of the normalised URL's UTF-8 bytes,
as MetaCLIP derives its image keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import idna
import numpy as np

try:  # the OpenSSL constructor itself: same digest, less call overhead (one call per image link)
    from _hashlib import openssl_sha224 as _sha224
except ImportError:  # Python built without OpenSSL
    _sha224 = hashlib.sha224

MAX_URL_CHARS = 2048
URL_REJECT_REASONS = ("unsupported_scheme", "data_uri", "invalid_url", "url_too_long")

_ALLOWED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EMBEDDED_WS = re.compile(r"[\t\r\n]")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_PCT_RE = re.compile(r"%[0-9a-fA-F]{2}")
# RFC 3986 reserved + unreserved characters and '%': left as they are by quote().
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = "/?%:@!$&'()*+,;=-._~[]"
_HOST_RE = re.compile(r"^[a-z0-9_.\-]+$|^\[[0-9a-f:.]+\]$")
# Already-canonical absolute URLs (the common case in url/text tables) skip the full parse:
# lower-case host without trailing dot, no default port (checked below), a path and query of
# characters that need no quoting, no '%' (escapes may need upper-casing), no fragment, and no
# "/." (possible dot segment). Anything else takes the slow path, which gives the same result.
_CANONICAL_RE = re.compile(
    r"^(https?)://[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*(?::(\d{1,5}))?/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*)?$"
)
# The same test without the port, for whole Arrow columns (RE2, where "$" is the end of the
# text only; Python's "$" also matches before a final "\n", which then takes the slow path).
_CANONICAL_NO_PORT_RE2 = (
    r"^https?://[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*)?$"
)
# A cheap cap before any parsing: no valid result can come from a longer input.
_MAX_RAW_CHARS = 4 * MAX_URL_CHARS


def _idna_host(host: str) -> str | None:
    """ASCII form of a host name, or None when it cannot be encoded."""
    host = host.lower().rstrip(".")
    if not host:
        return None
    if host.isascii():
        return host if _HOST_RE.match(host) else None
    # UTS #46 non-transitional (what browsers do: "ß" stays, "straße.de" -> "xn--strae-oqa.de");
    # the idna package is a hard dependency so the uuid of a URL never depends on the machine.
    try:
        encoded = idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        # IDNA 2008 refuses some hosts browsers still load (symbols, emoji): IDNA 2003 as fallback
        try:
            encoded = host.encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            return None
    return encoded if _HOST_RE.match(encoded) else None


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def _requote(part: str, safe: str) -> str:
    quoted = quote(part, safe=safe, encoding="utf-8", errors="strict")
    return _PCT_RE.sub(lambda m: m.group(0).upper(), quoted)


def normalize_url(url: object, base: str | None = None) -> tuple[str | None, str | None]:
    """Canonical absolute http(s) URL of an image link, or (None, reason). Never raises.

    `base` is the page URL (or the page's <base href>) that relative links resolve against.
    """
    if not isinstance(url, str):
        return None, "invalid_url"
    if _is_canonical(url):
        return url, None
    return _normalize(url, base)


def _is_canonical(url: str) -> bool:
    if len(url) > MAX_URL_CHARS or "/." in url:
        return False
    m = _CANONICAL_RE.match(url)
    if m is None:
        return False
    port = m.group(2)
    return port is None or (int(port) != _DEFAULT_PORTS[m.group(1)] and 0 < int(port) < 65536)


def canonical_flags(urls) -> np.ndarray:
    """Per URL of an Arrow string array: True where normalize_url(url) is (url, None) for sure.

    Decided in C for a whole column (the fast path of normalize_url, for URLs without a
    port); False means "not known" (nulls, ports, anything else): call normalize_url.
    A numpy bool array.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(urls.type) or pa.types.is_large_string(urls.type)):
        return np.zeros(len(urls), dtype=bool)
    ok = pc.and_kleene(pc.match_substring_regex(urls, _CANONICAL_NO_PORT_RE2),
                       pc.invert(pc.match_substring(urls, "/.")))
    ok = pc.and_kleene(ok, pc.less_equal(pc.utf8_length(urls), MAX_URL_CHARS))
    return pc.fill_null(ok, False).to_numpy(zero_copy_only=False)


def _normalize(url: str, base: str | None) -> tuple[str | None, str | None]:
    """The full normalisation (normalize_url without its fast path for canonical URLs)."""
    if len(url) > _MAX_RAW_CHARS:
        # data URIs are the usual reason for huge "URLs": report them as such
        return None, ("data_uri" if url.lstrip()[:5].lower() == "data:" else "url_too_long")
    url = _EMBEDDED_WS.sub("", url.strip())
    if not url:
        return None, "invalid_url"
    m = _SCHEME_RE.match(url)
    if m:
        scheme = m.group(1).lower()
        if scheme == "data":
            return None, "data_uri"
        if scheme not in _ALLOWED_SCHEMES:
            return None, "unsupported_scheme"
    try:
        if not m or url[len(m.group(0)):][:2] != "//":
            # relative, protocol-relative or scheme without authority ("http:foo"): needs a base
            if not base or not isinstance(base, str):
                return None, "invalid_url"
            base = _EMBEDDED_WS.sub("", base.strip())
            bm = _SCHEME_RE.match(base)
            if not bm or bm.group(1).lower() not in _ALLOWED_SCHEMES:
                return None, "invalid_url"
            url = urljoin(base, url)
            if _is_canonical(url):
                return url, None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "data":
            return None, "data_uri"
        if scheme not in _ALLOWED_SCHEMES:
            return None, "unsupported_scheme"
        host = parts.hostname  # lower-cased by urllib, without user info and port
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except (ValueError, UnicodeError):
        return None, "invalid_url"
    if not host:
        return None, "invalid_url"
    if host.startswith("[") or ":" in host:  # IPv6 literal
        ascii_host = "[" + host.strip("[]") + "]"
        if not _HOST_RE.match(ascii_host):
            return None, "invalid_url"
    else:
        ascii_host = _idna_host(host)
        if ascii_host is None:
            return None, "invalid_url"
    netloc = ascii_host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    try:
        if userinfo:
            netloc = f"{_requote(userinfo, _SAFE_PATH)}@{netloc}"
        path = _requote(_remove_dot_segments(parts.path) or "/", _SAFE_PATH)
        query = _requote(parts.query, _SAFE_QUERY)
    except (UnicodeError, ValueError):  # lone surrogates and the like
        return None, "invalid_url"
    result = urlunsplit((scheme, netloc, path, query, ""))
    if len(result) > MAX_URL_CHARS:
        return None, "url_too_long"
    return result, None


def image_uuid(normalized_url: str) -> str:
    """First 24 hex characters of sha224(normalised URL, UTF-8), MetaCLIP's image key."""
    return _sha224(normalized_url.encode()).hexdigest()[:24]  # str.encode() is UTF-8


def image_uuids(normalized_urls: Iterable[str]) -> list[str]:
    """image_uuid of each URL (one comprehension, no call per URL)."""
    sha = _sha224
    return [sha(u.encode()).hexdigest()[:24] for u in normalized_urls]
