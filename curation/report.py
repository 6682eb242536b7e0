"""The curate job's report: `report.json` (machine-readable) and a self-contained `report.html`.

The HTML has inline SVG plots only (no JavaScript, no external files, no plotting library):
texts and curated images per language (log scale), for the most matched languages the entry
counts before/after balancing (rank/frequency, and per entry: curated count against c and t),
the t_lang tables with one head/tail rule (curation.balance's), and the per-stage accounting
(records in = out + rejected by reason) with each stage's rejects in its own unit, normal
filtering apart from input errors.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping

import numpy as np

from curation import storage
from curation.inputs.base import LINK_REJECT_REASONS, SKIP_REASONS, TEXT_REJECT_REASONS

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
FILTER_COLOUR, ERROR_COLOUR = "#4c78a8", "#c0392b"
MAX_DIST_LANGS = 8  # languages with a distribution plot (the most matched ones)
MAX_RANK_POINTS = 200  # points per rank/frequency curve (log-spaced ranks)
MAX_BAR_LANGS = 40  # languages in the per-language bar chart (the most matched ones)

# Reasons a stage drops records by design: that is the curation, not a fault. Every other reason
# (curation.inputs' RECORD_REJECT_REASONS: corrupt or truncated gzip, bad WARC header, malformed
# JSON, ...; or one this list does not know yet) is reported as an error.
FILTER_REASONS = frozenset((*SKIP_REASONS, *LINK_REJECT_REASONS, *TEXT_REJECT_REASONS,
                            "no_metadata_lang", "low_lid_prob", "no_match", "duplicate_text", "not_sampled",
                            "eval_url", "eval_text", "eval_image", "near_dup_cap"))

DISTINCT_KEYS = ("image_url", "host", "page_url", "text")  # curation.sketches.KEYS, in the report's order
DISTINCT_NAMES = {"image_url": "image URLs", "host": "image hosts", "page_url": "page URLs", "text": "texts"}

# The one head/tail rule (curation.balance): stated once, in report.json and in the HTML.
DEFINITIONS = {
    "c": "matched texts per metadata entry of a language (an image's identical texts counted once)",
    "tail": "entries with 0 < c < t; the tail proportion is p = sum(c[c < t]) / sum(c) (curation.balance)",
    "head": "entries with c > t; each of their texts is sampled with probability t / c",
    "at_t": "entries with c = t are neither head nor tail: probability 1, but not counted in p",
    "unmatched": "entries with c = 0 (never matched)",
    "balancing": ("a text is kept when any of its entries is sampled: keep probability 1 - prod(1 - p_e) over "
                  "its entries, p_e = t / max(c_e, t); so a head entry whose texts also hold a tail entry keeps "
                  "more than t of them. Each image offers one of its matched texts, so an entry can also end "
                  "below min(c, t). The curated count per entry is measured, not capped at t."),
}


def _log_bins(counts: np.ndarray) -> dict:
    """Entries per power-of-two count bucket [2^k, 2^(k+1)), k from 0; zero counts apart."""
    c = counts[counts > 0]
    if c.size == 0:
        return {"zero": int(counts.size), "buckets": []}
    k = np.floor(np.log2(c)).astype(np.int64)
    hist = np.bincount(k)
    return {"zero": int((counts == 0).sum()), "buckets": [int(x) for x in hist]}


def _rank_curve(counts: np.ndarray) -> list[list[int]]:
    """[[rank, count], ...] of the descending positive counts at log-spaced ranks (1-based)."""
    c = np.sort(counts[counts > 0])[::-1]
    if c.size == 0:
        return []
    ranks = np.unique(np.geomspace(1, c.size, num=min(MAX_RANK_POINTS, c.size)).astype(np.int64))
    return [[int(r), int(c[r - 1])] for r in ranks]


def _per_entry(counts: np.ndarray, after: np.ndarray, t: int) -> list[dict]:
    """Matched entries by power-of-two bucket of c: what balancing did to each bucket's entries.

    Per bucket [c_from, c_to]: entries, mean c, the curated count per entry (mean, min, max) and
    the mean of min(c, t), the count if every text matched one entry and every image had one text.
    """
    m = counts > 0
    c, a = counts[m].astype(np.int64), after[m].astype(np.int64)
    if c.size == 0:
        return []
    k = np.floor(np.log2(c)).astype(np.int64)
    order = np.argsort(k, kind="stable")
    k, c, a = k[order], c[order], a[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    n = np.diff(np.r_[starts, k.size])
    out = []
    for b, s, size in zip(k[starts].tolist(), starts.tolist(), n.tolist(), strict=True):
        cc, aa = c[s:s + size], a[s:s + size]
        out.append({"c_from": 1 << b, "c_to": (1 << (b + 1)) - 1, "entries": size, "mean_c": float(cc.mean()),
                    "mean_after": float(aa.mean()), "min_after": int(aa.min()), "max_after": int(aa.max()),
                    "mean_min_c_t": float(np.minimum(cc, t).mean())})
    return out


def _split_rejects(rejected: Mapping[str, int]) -> tuple[dict, dict]:
    """(filtered, errors) of a stage's rejects, each most first."""
    items = sorted(((k, int(v)) for k, v in rejected.items() if v), key=lambda kv: (-kv[1], kv[0]))
    return ({k: v for k, v in items if k in FILTER_REASONS}, {k: v for k, v in items if k not in FILTER_REASONS})


def build_report(*, accounting: Mapping, thresholds: Mapping, counts_by_lang: Mapping[str, np.ndarray],
                 curated_counts_by_lang: Mapping[str, np.ndarray], matched_by_lang: Mapping[str, int],
                 lid_langs: Mapping[str, int], rows: Mapping, t_en: int, en_lang: str,
                 metadata_version: str, curated_by_lang: Mapping[str, int] | None = None,
                 distinct: Mapping | None = None, decontam: Mapping | None = None,
                 near_dup: Mapping | None = None, lid_corrections: Mapping[str, int] | None = None) -> dict:
    """Everything the HTML shows, as plain JSON values.

    `distinct`: sketches.DistinctCounts.summary() of the run's matched texts (HyperLogLog
    estimates of distinct image URLs, hosts, page URLs and texts, with their relative error);
    `decontam`: what decontamination dropped (counts by reason, examples, the index's stats);
    `near_dup`: the near-duplicate text clusters (largest clusters, shares per language).
    `lid_corrections`: texts the LID script check relabelled, by 'model>new' label pair (None:
    the check was off).

    `curated_by_lang`: curated images per language (the language of the text each curated image
    carries; they sum to rows["curated"]). Without it the per-language curated images are None.
    """
    curated_total = int(rows["curated"])
    langs = []
    for lang in sorted(thresholds):
        th = thresholds[lang]
        c = np.asarray(counts_by_lang[lang])
        after = np.asarray(curated_counts_by_lang.get(lang, np.zeros_like(c)))
        t = th["t"]
        images = None if curated_by_lang is None else int(curated_by_lang.get(lang, 0))
        langs.append({
            "lang": lang,
            "lid_texts": int(lid_langs.get(lang, 0)),
            "matched_texts": int(matched_by_lang.get(lang, 0)),
            "curated_images": images,
            "curated_share": None if images is None else (images / curated_total if curated_total else 0.0),
            "curated_texts_entries": int(after.sum()),
            "entries": int(c.size),
            "matched_entries": int((c > 0).sum()),
            "t": int(t),
            "p": th["p"],
            "tail_proportion": th["tail_proportion"],
            "tail_entries": int(((c > 0) & (c < t)).sum()),
            "at_t_entries": int((c == t).sum()) if t > 0 else 0,
            "head_entries": int((c > t).sum()),
            "drops_language": bool(th.get("drops_language", False)),
            "total_count": int(c.sum()),
            "expected_count_after": float(np.minimum(c, t).sum()) if t > 0 else 0.0,
            "count_after": int(after.sum()),
            "entries_above_t_after": int((after > t).sum()),
            "max_count": int(c.max()) if c.size else 0,
            "max_count_after": int(after.max()) if after.size else 0,
            "distinct": None if distinct is None else
            {key: int(distinct[key]["by_lang"].get(lang, 0)) for key in DISTINCT_KEYS},
        })
    reasons: dict[str, int] = {}
    by_stage = {}
    for stage, s in accounting.items():
        for reason, n in s["rejected"].items():
            reasons[f"{stage}:{reason}"] = reasons.get(f"{stage}:{reason}", 0) + int(n)
        filtered, errors = _split_rejects(s["rejected"])
        by_stage[stage] = {"unit": s.get("unit", ""), "in": int(s["in"]), "out": int(s["out"]),
                           "filtered": filtered, "errors": errors}
    top = sorted((x for x in langs if x["matched_texts"] > 0), key=lambda x: (-x["matched_texts"], x["lang"]))
    distributions = {}
    for x in top[:MAX_DIST_LANGS]:
        lang = x["lang"]
        c = np.asarray(counts_by_lang[lang])
        after = np.asarray(curated_counts_by_lang.get(lang, np.zeros_like(c)))
        distributions[lang] = {
            "t": x["t"],
            "before": {"rank_curve": _rank_curve(c), "log2_bins": _log_bins(c)},
            "after": {"rank_curve": _rank_curve(after), "log2_bins": _log_bins(after)},
            "per_entry": _per_entry(c, after, x["t"]),
            "entries_above_t_after": x["entries_above_t_after"],
        }
    return {
        "metadata_version": metadata_version,
        "t_en": int(t_en),
        "en_lang": en_lang,
        "p": thresholds[en_lang]["p"] if en_lang in thresholds else None,
        "definitions": dict(DEFINITIONS),
        "rows": dict(rows),
        "accounting": {k: dict(v) for k, v in accounting.items()},
        "all_stages_balanced": all(v["in"] == v["out"] + sum(v["rejected"].values()) for v in accounting.values()),
        "reject_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "stages": list(accounting),  # pipeline order (report.json sorts its keys)
        "rejects_by_stage": by_stage,
        "errors": sum(sum(s["errors"].values()) for s in by_stage.values()),
        "languages": langs,
        "distributions": distributions,
        "distributions_rule": f"the {MAX_DIST_LANGS} languages with the most matched texts",
        "distributions_omitted": [x["lang"] for x in top[MAX_DIST_LANGS:]],
        "distinct": None if distinct is None else dict(distinct),
        "decontam": None if decontam is None else dict(decontam),
        "near_dup": None if near_dup is None else dict(near_dup),
        "lid_script_check": None if lid_corrections is None else _lid_audit(lid_corrections, lid_langs),
    }


MAX_LID_PAIRS = 20


def _lid_audit(corrections: Mapping[str, int], lid_langs: Mapping[str, int]) -> dict:
    """What the LID script check changed: texts relabelled, their share of identified texts, and
    the most frequent 'model>new' label pairs."""
    total = int(sum(lid_langs.values()))
    n = int(sum(corrections.values()))
    pairs = sorted(((k, int(v)) for k, v in corrections.items()), key=lambda kv: (-kv[1], kv[0]))
    return {"relabelled": n, "identified": total, "share": n / total if total else 0.0,
            "by_pair": dict(pairs[:MAX_LID_PAIRS]), "pairs": len(pairs)}


# --- SVG ------------------------------------------------------------------------------------------


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _num(v: float) -> str:
    """An axis label: 0.1, 1, 10, 100, 1k, 10k, 100k, 1M, ..."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def svg_bars(items: list[tuple[str, list[float]]], series: list[str], title: str, width: int = 720,
             log: bool = False, total: float | None = None, colours: tuple[str, ...] = PALETTE) -> str:
    """Horizontal grouped bars: one row per label, one bar per series value.

    `log`: bar lengths on a log10 axis from 1 (ticks at the decades), so small values stay visible
    beside a dominant one. `total`: bars are shares of it (0-100 %), labelled "n (x %)".
    """
    if not items:
        return f"<p><em>{_esc(title)}: nothing to show.</em></p>"
    row_h, bar_h, right, top = 8 + 12 * len(series), 11, 120, 28 + (14 if log or total else 0)
    left = min(320, 16 + 7 * max(len(str(label)) for label, _ in items))  # room for the longest label
    height = top + row_h * len(items) + (24 if len(series) > 1 else 6)
    vmax = max(max(v) for _, v in items) or 1
    plot_w = width - left - right
    if total:
        def frac(v):
            return v / total
        ticks = [(plot_w * f, f"{f:.0%}") for f in (0, 0.25, 0.5, 0.75, 1)]
    elif log:
        span = math.log10(max(vmax, 10))  # the axis ends at the largest value

        def frac(v):
            return math.log10(v) / span if v >= 1 else 0.0
        ticks = [(plot_w * k / span, _num(10 ** k)) for k in range(int(span + 1e-9) + 1)]
    else:
        def frac(v):
            return v / vmax
        ticks = []
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="bold">{_esc(title)}</text>']
    for x, label in ticks:
        out.append(f'<line x1="{left + x:.1f}" y1="{top - 4}" x2="{left + x:.1f}" y2="{height - 22}" stroke="#ddd"/>'
                   f'<text x="{left + x:.1f}" y="{top - 7}" text-anchor="middle" font-size="10">{_esc(label)}</text>')
    for i, (label, values) in enumerate(items):
        y = top + i * row_h
        out.append(f'<text x="{left - 6}" y="{y + row_h / 2 + 4}" text-anchor="end" font-size="11">{_esc(label)}</text>')
        for j, v in enumerate(values):
            w = max(0.0, plot_w * frac(v))
            if v > 0:
                w = max(w, 2.0)  # a stub: the value exists
            text = f"{v:,.0f}" + (f" ({v / total:.1%})" if total else "")
            yy = y + 4 + j * 12
            out.append(f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="{bar_h}" fill="{colours[j % len(colours)]}">'
                       f'<title>{_esc(label)} {_esc(series[j])}: {text}</title></rect>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{yy + 9}" font-size="10">{text}</text>')
    for j, name in enumerate(series if len(series) > 1 else []):  # one series: the title names it
        x = left + j * 160
        out.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{colours[j % len(colours)]}"/>'
                   f'<text x="{x + 14}" y="{height - 5}" font-size="11">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


class _LogLogFrame:
    """The axes of a log-log plot (decade ticks, labels); sx/sy map data to pixels."""

    left, right, top, bottom = 48, 12, 24, 36

    def __init__(self, title: str, xlabel: str, ylabel: str, x1: float, y0: float, y1: float, width: int,
                 height: int):
        self.width, self.height = width, height
        self.kx1 = max(1, math.ceil(math.log10(max(x1, 10)) - 1e-9))
        self.ky0 = math.floor(math.log10(y0) + 1e-9)
        self.ky1 = max(self.ky0 + 1, math.ceil(math.log10(max(y1, 10)) - 1e-9))
        w, h, left, bottom = width, height, self.left, self.bottom
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
                      f'<text x="{w / 2}" y="15" text-anchor="middle" font-weight="bold" font-size="12">'
                      f'{_esc(title)}</text>',
                      f'<line x1="{left}" y1="{h - bottom}" x2="{w - self.right}" y2="{h - bottom}" stroke="#444"/>',
                      f'<line x1="{left}" y1="{self.top}" x2="{left}" y2="{h - bottom}" stroke="#444"/>']
        for k in range(self.kx1 + 1):
            self.parts.append(f'<text x="{self.sx(10 ** k):.1f}" y="{h - bottom + 13}" text-anchor="middle" '
                              f'font-size="10">{_num(10 ** k)}</text>')
        for k in range(self.ky0, self.ky1 + 1):
            self.parts.append(f'<text x="{left - 4}" y="{self.sy(10 ** k) + 3:.1f}" text-anchor="end" '
                              f'font-size="10">{_num(10 ** k)}</text>')
        self.parts.append(f'<text x="{w / 2}" y="{h - 4}" text-anchor="middle" font-size="10">{_esc(xlabel)}</text>'
                          f'<text x="10" y="{(h - bottom + self.top) / 2}" text-anchor="middle" font-size="10" '
                          f'transform="rotate(-90 10 {(h - bottom + self.top) / 2})">{_esc(ylabel)}</text>')
        self.legend_rows = 0

    def sx(self, x: float) -> float:
        return self.left + (self.width - self.left - self.right) * (math.log10(max(x, 1)) / self.kx1)

    def sy(self, y: float) -> float:
        k = math.log10(max(y, 10 ** self.ky0))
        return self.height - self.bottom - (self.height - self.top - self.bottom) * (k - self.ky0) / (self.ky1 - self.ky0)

    def polyline(self, pts, colour: str, dash: str = "", width: float = 1.6) -> None:
        path = " ".join(f"{self.sx(x):.1f},{self.sy(y):.1f}" for x, y in pts)
        dash = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}"{dash} points="{path}"/>')

    def t_line(self, t: float) -> None:
        y = self.sy(t)
        self.parts.append(f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.width - self.right}" y2="{y:.1f}" '
                          f'stroke="#999" stroke-dasharray="2,3"/><text x="{self.width - self.right}" '
                          f'y="{y - 3:.1f}" text-anchor="end" font-size="10">t={t:,.0f}</text>')

    def legend(self, name: str, colour: str, dash: str = "") -> None:
        """A legend row: a line sample (dashed like the curve) and the name."""
        x, y = self.left + 6, self.top + 10 + 11 * self.legend_rows
        dash = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{x}" y1="{y - 3}" x2="{x + 18}" y2="{y - 3}" stroke="{colour}" '
                          f'stroke-width="1.6"{dash}/><text x="{x + 22}" y="{y}" font-size="10" '
                          f'fill="{colour}">{_esc(name)}</text>')
        self.legend_rows += 1

    def svg(self) -> str:
        return "".join([*self.parts, "</svg>"])


def svg_loglog(curves: list[tuple[str, list[list[int]], str, bool]], title: str, hline: float | None = None,
               width: int = 360, height: int = 260) -> str:
    """Log-log rank/frequency curves: (name, [[rank, count], ...], colour, dashed)."""
    pts = [p for _, c, _, _ in curves for p in c]
    if not pts:
        return f"<p><em>{_esc(title)}: no counts.</em></p>"
    ymax = max([p[1] for p in pts] + ([hline] if hline else []))
    f = _LogLogFrame(title, "entry rank", "count", max(p[0] for p in pts), 1, ymax, width, height)
    if hline:
        f.t_line(hline)
    for name, curve, colour, dashed in curves:
        if curve:
            f.polyline(curve, colour, "5,3" if dashed else "")
            f.legend(name, colour, "5,3" if dashed else "")
    return f.svg()


def svg_per_entry(bins: list[dict], t: float, title: str, colour: str, width: int = 360, height: int = 260) -> str:
    """Curated count per entry against its matched count c (buckets of c, log-log), with y = c
    (no balancing), y = min(c, t) and the line t: points above min(c, t) are texts kept for another entry."""
    if not bins:
        return f"<p><em>{_esc(title)}: no counts.</em></p>"
    x1 = max(b["c_to"] for b in bins)
    positive = [v for b in bins for v in (b["mean_after"], b["min_after"]) if v > 0]
    y0 = max(0.01, min([1.0, *positive]))
    f = _LogLogFrame(title, "c: matched texts per entry", "curated per entry", x1, y0, max(x1, t, 10), width, height)
    f.polyline([(1, 1), (x1, x1)], "#bbb", "1,3")
    if t > 0:
        f.t_line(t)
        f.polyline([(1, min(1, t)), (min(t, x1), min(t, x1)), (x1, min(t, x1))], "#777", "5,3", 1.2)
    for b in bins:
        x = f.sx(b["mean_c"])
        f.parts.append(f'<line x1="{x:.1f}" y1="{f.sy(b["min_after"]):.1f}" x2="{x:.1f}" y2="{f.sy(b["max_after"]):.1f}" '
                       f'stroke="{colour}" stroke-opacity="0.5"/><circle cx="{x:.1f}" cy="{f.sy(b["mean_after"]):.1f}" '
                       f'r="2.6" fill="{colour}"><title>c in [{b["c_from"]:,}, {b["c_to"]:,}]: {b["entries"]:,} '
                       f'entries, curated mean {b["mean_after"]:.1f} (min {b["min_after"]:,}, max '
                       f'{b["max_after"]:,}), mean min(c, t) {b["mean_min_c_t"]:.1f}</title></circle>')
    f.polyline([(b["mean_c"], b["mean_after"]) for b in bins], colour)
    f.legend("curated: mean (bar: min-max)", colour)
    f.legend("min(c, t)", "#777", "5,3")
    f.legend("no balancing: c", "#999", "1,3")
    return f.svg()


# --- HTML ------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.bad{color:#b00;font-weight:bold}
.ok{color:#070}.grid{display:flex;flex-wrap:wrap;gap:8px}.pair{display:flex;border:1px solid #e4e4e4}h2{margin-top:28px}.note{color:#555;font-size:13px}
dl{font-size:14px}dt{font-weight:bold;float:left;clear:left;width:110px}dd{margin-left:120px;margin-bottom:3px}"""


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: object) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return '<span class="ok">yes</span>' if v else '<span class="bad">NO</span>'
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4f}"
    return _esc(v)


def _reasons(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in d.items()) or "-"


def _rejects_html(rep: Mapping) -> list[str]:
    """Per stage, in its own unit: normal filtering (blue) apart from errors (red), as shares of its input."""
    parts = ["<h2>Rejects per stage</h2><p>Each stage counts its own unit, so stages are not added up. "
             "<b>Filtered</b> is what curation drops by design (skipped records, unusable links and texts, no "
             "metadata language, no match, duplicate texts, images not sampled by balancing). <b>Errors</b> are "
             "input that could not be read (corrupt or truncated gzip, bad WARC headers, malformed JSON, ...) or a "
             "reason this report does not know as filtering. Bars are shares of the stage's input.</p>"]
    errors = rep["errors"]
    parts.append(f'<p class="bad">errors in all stages: {errors:,}</p>' if errors
                 else '<p class="ok">no errors in any stage</p>')
    for stage in rep["stages"]:
        s = rep["rejects_by_stage"][stage]
        parts.append(f"<h3>{_esc(stage)} <span class='note'>&mdash; unit: {_esc(s['unit'] or '?')}; in {s['in']:,}, "
                     f"out {s['out']:,}</span></h3>")
        for kind, colour, name in (("filtered", FILTER_COLOUR, "filtered"), ("errors", ERROR_COLOUR, "errors")):
            if s[kind]:
                parts.append(svg_bars([(k, [v]) for k, v in s[kind].items()], [name],
                                      f"{stage}: {name}, share of its {s['in']:,} in", total=s["in"] or 1,
                                      colours=(colour,)))
        if not s["errors"]:
            parts.append(f"<p class='ok'>{_esc(stage)}: no errors</p>")
    return parts


def _distinct_html(rep: Mapping, shown: list[dict]) -> list[str]:
    """Distinct values among the matched texts: HyperLogLog estimates, overall and per language."""
    d = rep.get("distinct")
    if not d:
        return []
    err = d["relative_error"]
    parts = [f"<h2>Distinct values among matched texts</h2><p class='note'>HyperLogLog estimates (precision "
             f"p = {d['precision']}): relative standard error {err:.2%}, so about 95% of estimates lie within "
             f"&plusmn;{2 * err:.2%} of the exact count (small counts are near exact: linear counting). Sketches are "
             "kept per input and merged, so an incremental run counts a value seen by several inputs once.</p>"]
    parts.append(_table(["", *(DISTINCT_NAMES[k] for k in DISTINCT_KEYS)],
                        [["all languages", *(d[k]["all"] for k in DISTINCT_KEYS)]]
                        + [[x["lang"], *(x["distinct"][k] if x.get("distinct") else None for k in DISTINCT_KEYS)]
                           for x in shown if x["matched_texts"]]))
    return parts


def _decontam_html(rep: Mapping) -> list[str]:
    d = rep.get("decontam")
    if not d:
        return []
    parts = ["<h2>Decontamination against evaluation sets</h2>",
             f"<p>Index: {_esc(_reasons(d.get('index', {})))}. Matched texts dropped: <b>{d['dropped']:,}</b> "
             f"({_esc(_reasons(d['by_reason']))}). Each is a reject (stage decontam) in rejects/.</p>"]
    if d.get("by_lang"):
        parts.append(_table(["lang", "dropped"], [[k, v] for k, v in d["by_lang"].items()]))
    if d.get("examples"):
        parts.append(f"<p class='note'>{len(d['examples'])} examples (of {d['dropped']:,}):</p>")
        parts.append(_table(["reason", "lang", "url", "text"],
                            [[e["reason"], e["lang"], e["url"], e["text"]] for e in d["examples"]]))
    return parts


def _lid_audit_html(rep: Mapping) -> list[str]:
    d = rep.get("lid_script_check")
    if not d:
        return []
    parts = ["<h2>Language ID: the script check</h2>",
             f"<p>The script check relabelled <b>{d['relabelled']:,}</b> of {d['identified']:,} identified texts "
             f"({d['share']:.2%}): lid.176's top label was a language not written in the text's script, and the "
             "model's best label that is replaced it (model label &gt; label used).</p>"]
    if d["by_pair"]:
        more = f" (the top {len(d['by_pair'])} of {d['pairs']})" if d["pairs"] > len(d["by_pair"]) else ""
        parts.append(_table([f"model > used{more}", "texts"], [[k, v] for k, v in d["by_pair"].items()]))
    return parts


def _near_dup_html(rep: Mapping) -> list[str]:
    d = rep.get("near_dup")
    if not d:
        return []
    parts = ["<h2>Near-duplicate alt-text clusters</h2>",
             f"<p class='note'>{_esc(d.get('definition', ''))}</p>",
             f"<p>{d['clusters']:,} clusters of two or more distinct texts hold {d['clustered_texts']:,} distinct "
             f"texts" + (f"; capped at {d['cap']:,} images per cluster: {d['capped_texts']:,} matched texts "
                         "dropped (rejects, stage near_dup)" if d.get("cap") else "") + ".</p>"]
    if d.get("by_lang"):
        parts.append(_table(["lang", "matched texts in clusters", "share of the language's matched texts"],
                            [[k, v["texts"], f"{v['share']:.2%}"] for k, v in d["by_lang"].items()]))
    if d.get("largest"):
        parts.append(_table(["cluster id", "matched texts", "distinct texts", "languages", "examples"],
                            [[c["id"], c["texts"], c["distinct_texts"], _reasons(c["by_lang"]),
                              " | ".join(c["examples"])] for c in d["largest"]]))
    return parts


def render_html(rep: Mapping) -> str:
    rows = rep["rows"]
    langs = rep["languages"]
    errors = rep["errors"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>curate report</title><style>{_CSS}</style>"
             "</head><body><h1>Curation report</h1>",
             f"<p>metadata version <b>{_esc(rep['metadata_version'])}</b>, t_en = <b>{rep['t_en']:,}</b>, "
             f"English tail proportion p = <b>{(rep['p'] or 0):.4f}</b>. {rows['inputs']:,} inputs &rarr; "
             f"{rows['matched_texts']:,} matched texts on {rows['images']:,} images &rarr; "
             f"<b>{rows['curated']:,}</b> curated images. "
             + (f'<span class="bad">Errors: {errors:,} (see Rejects per stage).</span>' if errors
                else '<span class="ok">No errors.</span>') + "</p>"]
    parts.append("<h2>Definitions</h2><dl>" + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
                                                       for k, v in rep["definitions"].items()) + "</dl>")
    ok = rep["all_stages_balanced"]
    parts.append("<h2>Accounting per stage</h2><p>records in = out + rejected (by reason), each stage in its unit: "
                 + ('<span class="ok">every stage balances</span>' if ok else '<span class="bad">UNBALANCED</span>')
                 + "</p>")
    parts.append(_table(["stage", "unit", "in", "out", "rejected", "filtered (by reason)", "errors (by reason)",
                         "balanced"], [
        [name, s.get("unit", ""), s["in"], s["out"], sum(s["rejected"].values()),
         _reasons(rep["rejects_by_stage"][name]["filtered"]), _reasons(rep["rejects_by_stage"][name]["errors"]),
         s["in"] == s["out"] + sum(s["rejected"].values())]
        for name, s in ((n, rep["accounting"][n]) for n in rep["stages"])]))

    shown = [x for x in langs if x["matched_texts"] or x["lid_texts"] or x["curated_images"]]
    shown.sort(key=lambda x: (-x["matched_texts"], -x["lid_texts"], x["lang"]))
    have_images = any(x["curated_images"] is not None for x in langs)
    which = (f"All {len(shown)} languages" if len(shown) <= MAX_BAR_LANGS else
             f"The {MAX_BAR_LANGS} of {len(shown)} languages with the most matched texts (all are in the table below "
             "and in report.json, languages)")
    parts.append("<h2>Texts and curated images per language</h2><p class='note'>Log scale: bar length is log10 of "
                 f"the number, so languages far smaller than the largest stay readable; shares are in the table. "
                 f"{which}.</p>")
    series = ["texts (LID)", "matched texts"] + (["curated images"] if have_images else [])
    parts.append(svg_bars([(x["lang"], [x["lid_texts"], x["matched_texts"]]
                            + ([x["curated_images"] or 0] if have_images else [])) for x in shown[:MAX_BAR_LANGS]],
                          series, "per language (log scale)", log=True))
    if not have_images:
        parts.append("<p class='bad'>curated images per language: not passed by the job (curated_by_lang)</p>")
    parts.append(_table(["lang", "texts (LID)", "matched texts", "curated images", "share of curated images",
                         "curated / matched"],
                        [[x["lang"], x["lid_texts"], x["matched_texts"], x["curated_images"],
                          None if x["curated_share"] is None else f"{x['curated_share']:.2%}",
                          None if x["curated_images"] is None or not x["matched_texts"]
                          else f"{x['curated_images'] / x['matched_texts']:.2%}"] for x in shown]))

    dist = rep["distributions"]
    omitted = rep["distributions_omitted"]
    parts.append("<h2>Entry counts before and after balancing</h2><ul>"
                 f"<li>Shown: {_esc(rep['distributions_rule'])} "
                 f"({_esc(', '.join(dist) or 'none')}). "
                 + (f"Not plotted: {_esc(', '.join(omitted))}; their numbers are in the tables below and in "
                    "report.json (languages).</li>" if omitted else "Every language with matched texts is plotted.</li>")
                 + "<li>Left: rank/frequency of entry counts, log-log (solid: c, matched texts per entry; dashed: the "
                 "curated count per entry, sorted on its own); dotted: t.</li>"
                 "<li>Right: what balancing did per entry: curated count against c (entries in power-of-two buckets "
                 "of c: dot = mean, bar = min to max). Dashed: min(c, t), what it would be if every text matched one "
                 "entry and every image had one text; dotted diagonal: c, no balancing.</li>"
                 "<li>The head is not cut flat at t: " + _esc(rep["definitions"]["balancing"]) + "</li></ul>"
                 "<div class='grid'>")
    for i, (lang, d) in enumerate(dist.items()):
        colour = PALETTE[i % len(PALETTE)]
        parts.append("<div class='pair'>" + svg_loglog(
            [("before: c", d["before"]["rank_curve"], colour, False),
             ("after: curated", d["after"]["rank_curve"], "#555", True)],
            f"{lang}: rank/frequency, t = {d['t']:,}", hline=d["t"] or None, width=260, height=230))
        parts.append(svg_per_entry(d["per_entry"], d["t"],
                                   f"{lang}: per entry, {d['entries_above_t_after']:,} end above t", colour,
                                   width=260, height=230) + "</div>")
    parts.append("</div>")
    parts.append("<h2>t_lang per language</h2><p class='note'>Head, tail and at-t entries as defined above "
                 "(curation.balance): tail 0 &lt; c &lt; t, head c &gt; t, c = t neither.</p>")
    parts.append(_table(
        ["lang", "matched texts", "entries", "matched entries (c > 0)", "t_lang", "tail entries (0 < c < t)",
         "entries at t (c = t)", "head entries (c > t)", "tail proportion p = Σc[c<t]/Σc", "Σc",
         "Σ min(c, t)", "Σ curated per entry", "entries above t after", "max c", "max curated"],
        [[x["lang"] + (" (t = 0: dropped)" if x["drops_language"] else ""), x["matched_texts"], x["entries"],
          x["matched_entries"], x["t"], x["tail_entries"], x["at_t_entries"], x["head_entries"],
          x["tail_proportion"], x["total_count"], round(x["expected_count_after"]), x["count_after"],
          x["entries_above_t_after"], x["max_count"], x["max_count_after"]] for x in shown]))
    parts.extend(_distinct_html(rep, shown))
    parts.extend(_decontam_html(rep))
    parts.extend(_lid_audit_html(rep))
    parts.extend(_near_dup_html(rep))
    parts.extend(_rejects_html(rep))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(rep: Mapping, directory: str) -> tuple[str, str]:
    """Write report.json and report.html into `directory` (local or s3://); returns their paths."""
    json_path = storage.join(directory, "report.json")
    html_path = storage.join(directory, "report.html")
    storage.write_bytes(json_path, (json.dumps(rep, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
    storage.write_bytes(html_path, render_html(rep).encode("utf-8"))
    return json_path, html_path
