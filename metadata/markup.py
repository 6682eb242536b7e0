"""Fast wikitext -> plain text: what readers see of an article, for unigram/bigram counting.

A full MediaWiki parser (template expansion, Lua) is far too slow at Wikipedia scale and not
needed for word counts. This stripper removes what is not prose and keeps anchor text:

- comments; `<ref>`, `<math>`, `<gallery>`, `<pre>`, `<nowiki>`, ... blocks with their content;
- templates `{{…}}` and tables `{|…|}` (with all their nesting);
- file/image/category/interlanguage links; other internal links become their anchor text
  (`[[target|anchor]]` -> anchor, `[[target]]s` -> targets); external links keep their label;
- remaining HTML tags, bold/italic quotes, heading `=`, list markers, magic words, entities.

Nesting is resolved by linear scans over open/close tokens with an explicit stack (no
recursion, no backtracking regex), so absurd nesting costs O(n log n) at worst and never blows
the stack; pages nested deeper than `max_nesting` are counted (`deep_nesting`) and their
nested regions dropped wholesale. Unclosed openers are dropped as single tokens, so one stray
`{{` does not swallow the rest of a page.
"""

from __future__ import annotations

import html
import re
from collections import Counter

# Namespaces that are never prose, in their canonical (English) names; each dump adds its
# localized names from <siteinfo>.
CANONICAL_NAMESPACES = frozenset(
    n.lower()
    for n in (
        "Media", "Special", "Talk", "User", "User talk", "Wikipedia", "Project", "File", "Image",
        "MediaWiki", "Template", "Help", "Category", "Portal", "Draft", "Module", "TimedText",
        "Book", "Gadget", "Topic", "WP", "WT", "CAT", "Wiktionary", "wikt", "w", "s", "q", "n",
        "b", "v", "voy", "d", "c", "m", "mw", "meta", "commons", "species", "wikisource",
        "wikiquote", "wikibooks", "wikinews", "wikiversity", "wikivoyage", "wikidata",
    )
)

_DROP_TAGS = (
    "ref", "math", "gallery", "nowiki", "pre", "syntaxhighlight", "source", "timeline", "score",
    "graph", "mapframe", "maplink", "templatedata", "templatestyles", "imagemap", "hiero", "chem",
    "ce", "code", "references", "inputbox", "categorytree", "charinsert", "section", "indicator",
    "div class=\"references", "table",
)
_DROP_TAG_NAMES = tuple(t for t in _DROP_TAGS if " " not in t)
_TAG_TOKEN_RE = re.compile(
    r"<(/?)(" + "|".join(_DROP_TAG_NAMES) + r")\b([^<>]{0,2000}?)(/?)>", re.I
)
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
# table delimiters count only at a line start; the text is scanned with a leading "\n"
_BRACE_TOKEN_RE = re.compile(r"\{\{|\}\}|\n[ \t]*(?:\{\||\|\})")
_SIMPLE_LINK_RE = re.compile(r"\[\[([^\[\]\n]*)\]\]")
_LINK_TOKEN_RE = re.compile(r"\[\[|\]\]")
_EXT_LINK_RE = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]\n]*)\]")
_BARE_URL_RE = re.compile(r"(?:https?|ftp)://[^\s<>\[\]{}|]+")
_HTML_TAG_RE = re.compile(r"</?[a-zA-Z][^<>\n]{0,500}?/?>")
_QUOTES_RE = re.compile(r"''+")
_HEADING_RE = re.compile(r"^(=+)[ \t]*(.*?)[ \t]*=+[ \t]*$", re.M)
_LIST_RE = re.compile(r"^[*#:;]+[ \t]*", re.M)
_TABLE_LINE_RE = re.compile(r"^[ \t]*[|!].*$", re.M)
_MAGIC_RE = re.compile(r"__[A-Z_]{2,40}__|\n-{4,}")
_LANG_CODE_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,12})*$")
_PAREN_RE = re.compile(r"\s*\([^()]*\)\s*$")
_SPACE_RE = re.compile(r"[ \t\u00a0]{2,}|[\t\u00a0]")
_BLANK_LINES_RE = re.compile(r"\n\s*\n+")


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans.sort()
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _cut(text: str, spans: list[tuple[int, int]], repl: str = "") -> str:
    if not spans:
        return text
    parts = []
    pos = 0
    for s, e in _merge_spans(spans):
        parts.append(text[pos:s])
        parts.append(repl)
        pos = e
    parts.append(text[pos:])
    return "".join(parts)


def _paired_spans(text: str, token_re: re.Pattern, is_open) -> tuple[list, int]:
    """Spans of matched open/close token pairs (outermost spans contain inner ones).

    Returns (spans to remove, deepest nesting seen). Unmatched tokens become 0-width-content
    spans of just the token, so they are removed without taking text with them.
    """
    stack: list[tuple[int, int]] = []
    spans: list[tuple[int, int]] = []
    deepest = 0
    for m in token_re.finditer(text):
        if is_open(m.group()):
            stack.append((m.start(), m.end()))
            if len(stack) > deepest:
                deepest = len(stack)
        elif stack:
            s, _ = stack.pop()
            spans.append((s, m.end()))
        else:
            spans.append((m.start(), m.end()))  # stray closer
    spans.extend(stack)  # unclosed openers: drop the token only
    return spans, deepest


def _is_brace_open(tok: str) -> bool:
    return tok.endswith(("{{", "{|"))


class MarkupStripper:
    """Strips one language's wikitext; `namespaces` are the dump's localized namespace names."""

    def __init__(self, namespaces: frozenset[str] | set[str] = frozenset(), max_nesting: int = 64):
        self.namespaces = frozenset(n.lower() for n in namespaces) | CANONICAL_NAMESPACES
        self.max_nesting = max_nesting

    # --- blocks -------------------------------------------------------------------------------
    def _drop_tag_blocks(self, text: str) -> str:
        tokens = list(_TAG_TOKEN_RE.finditer(text))
        if not tokens:
            return text
        last_close: dict[str, int] = {}
        for m in tokens:
            if m.group(1):
                last_close[m.group(2).lower()] = m.start()
        spans = []
        open_name = None
        open_start = 0
        depth = 0
        for m in tokens:
            name = m.group(2).lower()
            closing, self_closing = bool(m.group(1)), bool(m.group(4))
            if open_name is None:
                if closing or self_closing or last_close.get(name, -1) < m.start():
                    spans.append((m.start(), m.end()))  # self-closing, stray or unclosed tag
                else:
                    open_name, open_start, depth = name, m.start(), 1
            elif name == open_name and not self_closing:
                depth += -1 if closing else 1
                if depth == 0:
                    spans.append((open_start, m.end()))
                    open_name = None
        if open_name is not None:  # opened before its last closer but nesting never balanced
            spans.append((open_start, len(text)))
        return _cut(text, spans)

    # --- links --------------------------------------------------------------------------------
    def _link_text(self, content: str, links: Counter | None) -> str:
        target, sep, anchor = content.partition("|")
        t = target.strip()
        article = True
        if t.startswith(":"):  # [[:Category:X]] is a visible link to a non-article
            t = t[1:].lstrip()
            article = False
        elif ":" in t:
            prefix = t.split(":", 1)[0].strip().lower()
            if prefix in self.namespaces or _LANG_CODE_RE.match(prefix):
                return ""
        page = t.split("#", 1)[0]
        if article and links is not None and page:
            key = normalize_title(page)
            if key:
                links[key] += 1
        if sep:
            return anchor if anchor.strip() else _PAREN_RE.sub("", t.split(":", 1)[-1])  # pipe trick
        return page if page else t.lstrip("#")

    def _links(self, text: str, links: Counter | None) -> str:
        if "[[" not in text:
            return text

        def repl(m: re.Match) -> str:
            return self._link_text(m.group(1), links)

        for _ in range(3):  # innermost links first: a file caption's links go before the file link
            text, n = _SIMPLE_LINK_RE.subn(repl, text)
            if not n or "[[" not in text:
                break
        if "[[" in text or "]]" in text:  # deeper or malformed leftovers: drop whole regions
            spans, _ = _paired_spans(text, _LINK_TOKEN_RE, lambda t: t == "[[")
            text = _cut(text, spans)
        return text

    # --- all ----------------------------------------------------------------------------------
    def strip(self, text: str, links: Counter | None = None, stats: Counter | None = None) -> str:
        """Plain text of one page's wikitext; `links` (if given) counts article link targets."""
        if "<!--" in text:
            text = _COMMENT_RE.sub("", text)
        if "<" in text:
            text = self._drop_tag_blocks(text)
        if "{" in text or "|}" in text:
            spans, deepest = _paired_spans("\n" + text, _BRACE_TOKEN_RE, _is_brace_open)
            if deepest > self.max_nesting and stats is not None:
                stats["deep_nesting"] += 1
            text = _cut("\n" + text, spans)
        text = self._links(text, links)
        if "[" in text:
            text = _EXT_LINK_RE.sub(r"\1", text)
        if "://" in text:
            text = _BARE_URL_RE.sub("", text)
        if "<" in text:
            text = _HTML_TAG_RE.sub("", text)
        if "''" in text:
            text = _QUOTES_RE.sub("", text)
        if "==" in text:
            text = _HEADING_RE.sub(r"\2", text)
        text = _TABLE_LINE_RE.sub("", text)
        text = _LIST_RE.sub("", text)
        if "__" in text or "----" in text:
            text = _MAGIC_RE.sub("", text)
        if "&" in text:
            text = html.unescape(text)
        text = _SPACE_RE.sub(" ", text)
        return _BLANK_LINES_RE.sub("\n", text).strip()


def normalize_title(title: str) -> str:
    """A page title as MediaWiki stores it: '_' -> ' ', trimmed, first letter upper-cased."""
    t = title.replace("_", " ").strip()
    if "  " in t or "\t" in t or "\u00a0" in t:
        t = _SPACE_RE.sub(" ", t).replace("\u00a0", " ")
    if not t:
        return ""
    return t[0].upper() + t[1:]


def strip_markup(text: str, namespaces: frozenset[str] = frozenset()) -> str:
    """Convenience one-shot form of MarkupStripper(namespaces).strip(text)."""
    return MarkupStripper(namespaces).strip(text)
