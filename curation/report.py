"""The curate job's report: `report.json` (machine-readable) and a self-contained `report.html`.

The HTML has inline SVG plots only (no JavaScript, no external files, no plotting library):
matched texts per language, entry-count distributions (rank/frequency, log-log) before and
after balancing with the t_lang line, the t_lang table, reject reasons and the per-stage
accounting (records in = out + rejected by reason).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
MAX_DIST_LANGS = 8  # languages with a distribution plot (the most matched ones)
MAX_RANK_POINTS = 200  # points per rank/frequency curve (log-spaced ranks)


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


def build_report(*, accounting: Mapping, thresholds: Mapping, counts_by_lang: Mapping[str, np.ndarray],
                 curated_counts_by_lang: Mapping[str, np.ndarray], matched_by_lang: Mapping[str, int],
                 lid_langs: Mapping[str, int], rows: Mapping, t_en: int, en_lang: str,
                 metadata_version: str) -> dict:
    """Everything the HTML shows, as plain JSON values."""
    langs = []
    for lang in sorted(thresholds):
        th = thresholds[lang]
        c = np.asarray(counts_by_lang[lang])
        after = np.asarray(curated_counts_by_lang.get(lang, np.zeros_like(c)))
        t = th["t"]
        langs.append({
            "lang": lang,
            "lid_texts": int(lid_langs.get(lang, 0)),
            "matched_texts": int(matched_by_lang.get(lang, 0)),
            "curated_texts_entries": int(after.sum()),
            "entries": int(c.size),
            "matched_entries": int((c > 0).sum()),
            "t": int(t),
            "p": th["p"],
            "tail_proportion": th["tail_proportion"],
            "head_entries": int((c > t).sum()) if t > 0 else 0,
            "total_count": int(c.sum()),
            "expected_count_after": float(np.minimum(c, t).sum()) if t > 0 else 0.0,
            "count_after": int(after.sum()),
            "max_count": int(c.max()) if c.size else 0,
            "max_count_after": int(after.max()) if after.size else 0,
        })
    reasons: dict[str, int] = {}
    for stage, s in accounting.items():
        for reason, n in s["rejected"].items():
            reasons[f"{stage}:{reason}"] = reasons.get(f"{stage}:{reason}", 0) + int(n)
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
        }
    return {
        "metadata_version": metadata_version,
        "t_en": int(t_en),
        "en_lang": en_lang,
        "p": thresholds[en_lang]["p"] if en_lang in thresholds else None,
        "rows": dict(rows),
        "accounting": {k: dict(v) for k, v in accounting.items()},
        "all_stages_balanced": all(v["in"] == v["out"] + sum(v["rejected"].values()) for v in accounting.values()),
        "reject_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "languages": langs,
        "distributions": distributions,
    }


# --- SVG ------------------------------------------------------------------------------------------


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def svg_bars(items: list[tuple[str, list[float]]], series: list[str], title: str, width: int = 720) -> str:
    """Horizontal grouped bars: one row per label, one bar per series value."""
    if not items:
        return f"<p><em>{_esc(title)}: nothing to show.</em></p>"
    row_h, bar_h, right, top = 8 + 12 * len(series), 11, 90, 28
    left = min(320, 16 + 7 * max(len(str(label)) for label, _ in items))  # room for the longest label
    height = top + row_h * len(items) + 24
    vmax = max(max(v) for _, v in items) or 1
    plot_w = width - left - right
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-weight="bold">{_esc(title)}</text>']
    for i, (label, values) in enumerate(items):
        y = top + i * row_h
        out.append(f'<text x="{left - 6}" y="{y + row_h / 2 + 4}" text-anchor="end" font-size="11">{_esc(label)}</text>')
        for j, v in enumerate(values):
            w = max(0.0, plot_w * v / vmax)
            yy = y + 4 + j * 12
            out.append(f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[j % len(PALETTE)]}">'
                       f'<title>{_esc(label)} {_esc(series[j])}: {v:,.0f}</title></rect>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{yy + 9}" font-size="10">{v:,.0f}</text>')
    for j, name in enumerate(series):
        x = left + j * 140
        out.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
                   f'<text x="{x + 14}" y="{height - 5}" font-size="11">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_loglog(curves: list[tuple[str, list[list[int]], str, bool]], title: str, hline: float | None = None,
               width: int = 360, height: int = 260) -> str:
    """Log-log rank/frequency curves: (name, [[rank, count], ...], colour, dashed)."""
    pts = [p for _, c, _, _ in curves for p in c]
    if not pts:
        return f"<p><em>{_esc(title)}: no counts.</em></p>"
    left, right, top, bottom = 48, 12, 24, 36
    xmax = max(p[0] for p in pts)
    ymax = max([p[1] for p in pts] + ([hline] if hline else []))
    lx, ly = math.log10(max(xmax, 10)), math.log10(max(ymax, 10))

    def sx(x):
        return left + (width - left - right) * (math.log10(x) / lx)

    def sy(y):
        return height - bottom - (height - top - bottom) * (math.log10(max(y, 1)) / ly)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<text x="{width / 2}" y="15" text-anchor="middle" font-weight="bold" font-size="12">{_esc(title)}</text>',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#444"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#444"/>']
    for k in range(int(lx) + 1):
        x = sx(10 ** k)
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 13}" text-anchor="middle" font-size="10">1e{k}</text>')
    for k in range(int(ly) + 1):
        y = sy(10 ** k)
        out.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end" font-size="10">1e{k}</text>')
    out.append(f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle" font-size="10">entry rank</text>')
    if hline:
        y = sy(hline)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#999" '
                   f'stroke-dasharray="2,3"/><text x="{width - right}" y="{y - 3:.1f}" text-anchor="end" '
                   f'font-size="10">t={hline:,.0f}</text>')
    for i, (name, curve, colour, dashed) in enumerate(curves):
        if not curve:
            continue
        path = " ".join(f"{sx(r):.1f},{sy(c):.1f}" for r, c in curve)
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6"{dash} points="{path}"/>')
        out.append(f'<text x="{width - right - 4}" y="{top + 12 + 12 * i}" text-anchor="end" font-size="10" '
                   f'fill="{colour}">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


# --- HTML ------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.bad{color:#b00;font-weight:bold}
.ok{color:#070}.grid{display:flex;flex-wrap:wrap;gap:8px}h2{margin-top:28px}"""


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return '<span class="ok">yes</span>' if v else '<span class="bad">NO</span>'
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4f}"
    return _esc(v)


def render_html(rep: Mapping) -> str:
    rows = rep["rows"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>curate report</title><style>{_CSS}</style>"
             "</head><body><h1>Curation report</h1>",
             f"<p>metadata version <b>{_esc(rep['metadata_version'])}</b>, t_en = <b>{rep['t_en']:,}</b>, "
             f"English tail proportion p = <b>{(rep['p'] or 0):.4f}</b>. {rows['inputs']:,} inputs &rarr; "
             f"{rows['matched_texts']:,} matched texts on {rows['images']:,} images &rarr; "
             f"<b>{rows['curated']:,}</b> curated images.</p>"]
    ok = rep["all_stages_balanced"]
    parts.append("<h2>Accounting per stage</h2><p>records in = out + rejected (by reason): "
                 + ('<span class="ok">every stage balances</span>' if ok else '<span class="bad">UNBALANCED</span>')
                 + "</p>")
    parts.append(_table(["stage", "unit", "in", "out", "rejected", "by reason", "balanced"], [
        [name, s.get("unit", ""), s["in"], s["out"], sum(s["rejected"].values()),
         ", ".join(f"{k}: {v:,}" for k, v in sorted(s["rejected"].items(), key=lambda kv: -kv[1])) or "-",
         s["in"] == s["out"] + sum(s["rejected"].values())]
        for name, s in rep["accounting"].items()]))
    matched = [x for x in rep["languages"] if x["matched_texts"] or x["lid_texts"]]
    matched.sort(key=lambda x: (-x["matched_texts"], -x["lid_texts"], x["lang"]))
    parts.append("<h2>Texts per language</h2>")
    parts.append(svg_bars([(x["lang"], [x["lid_texts"], x["matched_texts"]]) for x in matched[:40]],
                          ["texts (LID)", "matched texts"], "texts per language (top 40 by matched texts)"))
    parts.append("<h2>Entry counts before and after balancing</h2><p>Rank/frequency of entry counts (log-log): "
                 "solid = matched texts per entry, dashed = entries of the curated (offline) sample; the dotted "
                 "line is t_lang. Balancing flattens the head above t and keeps the tail.</p><div class='grid'>")
    for i, (lang, d) in enumerate(rep["distributions"].items()):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(svg_loglog([("before", d["before"]["rank_curve"], colour, False),
                                 ("after", d["after"]["rank_curve"], "#555", True)],
                                f"{lang}: t = {d['t']:,}", hline=d["t"] or None))
    parts.append("</div>")
    parts.append("<h2>t_lang per language</h2>")
    parts.append(_table(
        ["lang", "texts (LID)", "matched texts", "entries", "matched entries", "t_lang", "head entries (c > t)",
         "tail proportion", "sum of counts", "expected after", "in curated sample", "max count", "max after"],
        [[x["lang"], x["lid_texts"], x["matched_texts"], x["entries"], x["matched_entries"], x["t"],
          x["head_entries"], x["tail_proportion"], x["total_count"], round(x["expected_count_after"]),
          x["count_after"], x["max_count"], x["max_count_after"]] for x in matched]))
    parts.append("<h2>Reject reasons</h2>")
    reasons = sorted(rep["reject_reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:40]
    parts.append(svg_bars([(k, [v]) for k, v in reasons], ["records"],
                          "rejected / skipped by stage:reason"))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(rep: Mapping, directory: str) -> tuple[str, str]:
    """Write report.json and report.html into `directory`; returns their paths."""
    json_path = os.path.join(directory, "report.json")
    html_path = os.path.join(directory, "report.html")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(rep, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(rep))
    return json_path, html_path
