"""reproduce.html (self-contained: inline SVG plots, one base64 PNG, no external asset) and reproduce.json.

The HTML states the two questions, answers each from the paired per-seed differences (see
training.reproduce.analysis for what "shown" means), then gives the table, the plots, the
per-language numbers, the pipeline's funnel and what the miniature cannot show.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from curation.storage import atomic_local_path
from training.reproduce.arm import ARMS

COLOURS = {"raw": "#d95f02", "balanced": "#1b9e77", "english": "#7570b3"}
GREY = "#888"


def esc(x) -> str:
    return html.escape(str(x))


def pm(s: dict | None, digits: int = 3) -> str:
    """mean ± std over seeds of a stats dict (the mean alone for one seed)."""
    if not s:
        return "–"
    fmt = ",.0f" if digits == 0 else f".{digits}f"
    if s["n"] == 1:
        return f"{s['mean']:{fmt}}"
    return f"{s['mean']:{fmt}} ± {s['std']:{fmt}}"


# --- SVG ---------------------------------------------------------------------------------------------


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="sans-serif" font-size="11"><title>{esc(title)}</title>' + "".join(body) + "</svg>")


def _axis(x0, y0, w, h, ymax, ylabel, ticks=5, log=False, ymin=None) -> list[str]:
    out = [f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 - h}" stroke="#333"/>',
           f'<line x1="{x0}" y1="{y0}" x2="{x0 + w}" y2="{y0}" stroke="#333"/>',
           f'<text x="{x0 - 38}" y="{y0 - h / 2}" transform="rotate(-90 {x0 - 38} {y0 - h / 2})" '
           f'text-anchor="middle">{esc(ylabel)}</text>']
    if log:
        lo, hi = math.floor(math.log10(ymin)), math.ceil(math.log10(ymax))
        vals = [10 ** k for k in range(lo, hi + 1)]
    else:
        vals = [ymax * i / ticks for i in range(ticks + 1)]
    for v in vals:
        y = _ypos(v, y0, h, ymax, log, ymin)
        out.append(f'<line x1="{x0 - 3}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#eee"/>')
        label = f"{v:g}" if log else (f"{v:.2f}" if ymax <= 1.5 else f"{v:.0f}")
        out.append(f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    return out


def _ypos(v, y0, h, ymax, log=False, ymin=None) -> float:
    if log:
        lo, hi = math.log10(ymin), math.log10(ymax)
        return y0 - h * (math.log10(max(v, ymin)) - lo) / max(hi - lo, 1e-9)
    return y0 - h * v / ymax if ymax else y0


def _legend(x, y, series) -> list[str]:
    out = []
    for i, (name, colour) in enumerate(series):
        out.append(f'<rect x="{x}" y="{y + 15 * i - 9}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{x + 14}" y="{y + 15 * i}">{esc(name)}</text>')
    return out


def bar_chart(groups: list[str], series: list[tuple[str, str, list[float], list[list[float]]]], title: str,
              ylabel: str, width: int = 720, height: int = 300, ymax: float | None = None) -> str:
    """Grouped bars (the seed mean) with a dot per seed; series = (name, colour, means, per-seed values)."""
    x0, y0, w, h = 60, height - 40, width - 250, height - 70
    top = ymax or max([v for _, _, ms, pts in series for v in ms + [p for ps in pts for p in ps] if v == v] + [1e-6])
    top = ymax or min(1.0, math.ceil(top * 10 + 0.5) / 10)
    body = [f'<text x="{x0}" y="16" font-weight="bold" font-size="13">{esc(title)}</text>']
    body += _axis(x0, y0, w, h, top, ylabel)
    gw = w / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for gi, g in enumerate(groups):
        gx = x0 + gi * gw + gw * 0.1
        body.append(f'<text x="{gx + gw * 0.4:.1f}" y="{y0 + 15}" text-anchor="middle">{esc(g)}</text>')
        for si, (_name, colour, means, points) in enumerate(series):
            m = means[gi]
            if m != m:  # nan
                continue
            bx = gx + si * bw
            y = _ypos(m, y0, h, top)
            body.append(f'<rect x="{bx:.1f}" y="{y:.1f}" width="{bw * 0.92:.1f}" height="{y0 - y:.1f}" fill="{colour}" '
                        f'opacity="0.85"><title>{esc(f"{m:.3f}")}</title></rect>')
            for p in points[gi]:
                py = _ypos(p, y0, h, top)
                body.append(f'<circle cx="{bx + bw * 0.46:.1f}" cy="{py:.1f}" r="2.4" fill="#222"/>')
    body += _legend(x0 + w + 20, 40, [(n, c) for n, c, _, _ in series])
    body.append(f'<text x="{x0 + w + 20}" y="{40 + 15 * len(series) + 10}" fill="{GREY}">bar: mean over seeds;</text>'
                f'<text x="{x0 + w + 20}" y="{40 + 15 * len(series) + 24}" fill="{GREY}">dot: one seed</text>')
    return _svg(width, height, body, title)


def line_chart(xlabels: list[str], series: list[tuple[str, str, list[float | None]]], title: str, ylabel: str,
               width: int = 720, height: int = 300, log: bool = False, xlabel: str = "",
               show_points: bool = True) -> str:
    x0, y0, w, h = 60, height - 48, width - 250, height - 80
    ys = [v for _, _, vals in series for v in vals if v is not None and v == v and (v > 0 or not log)]
    if log:
        ymin, ymax = max(min(ys), 1e-3) if ys else 0.1, max(ys) if ys else 1.0
        ymin = 10 ** math.floor(math.log10(ymin))
        ymax = 10 ** math.ceil(math.log10(ymax))
    else:
        ymin, ymax = None, min(1.0, math.ceil((max(ys) if ys else 1) * 10 + 0.5) / 10)
    body = [f'<text x="{x0}" y="16" font-weight="bold" font-size="13">{esc(title)}</text>']
    body += _axis(x0, y0, w, h, ymax, ylabel, log=log, ymin=ymin)
    n = len(xlabels)
    xs = [x0 + (i + 0.5) * w / max(n, 1) for i in range(n)]
    step = max(1, n // 12)
    for i, lab in enumerate(xlabels):
        if i % step == 0:
            body.append(f'<text x="{xs[i]:.1f}" y="{y0 + 14}" text-anchor="middle">{esc(lab)}</text>')
    if xlabel:
        body.append(f'<text x="{x0 + w / 2}" y="{y0 + 32}" text-anchor="middle">{esc(xlabel)}</text>')
    for _name, colour, vals in series:
        pts = [(xs[i], _ypos(v, y0, h, ymax, log, ymin)) for i, v in enumerate(vals)
               if v is not None and v == v and (v > 0 or not log)]
        if len(pts) > 1:
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="' +
                        " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        if show_points:
            body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pts]
    body += _legend(x0 + w + 20, 40, [(n, c) for n, c, _ in series])
    return _svg(width, height, body, title)


# --- the page -----------------------------------------------------------------------------------------


def look_strip(world_cfg: dict, concepts: list[dict], languages: list[str], n: int = 6, variants: int = 6) -> str:
    """A base64 PNG of a few concepts' drawn looks (the pool's own renderer), with their names."""
    from PIL import Image

    from training.reproduce.world import World, WorldConfig, _rng, draw_look

    world = World(WorldConfig.from_dict(world_cfg))
    px = world.cfg.image_px
    grid = Image.new("RGB", (px * variants, px * n), "white")
    for r in range(min(n, len(world.concepts))):
        for k in range(variants):
            grid.paste(draw_look(world.concepts[r].look, _rng(world.cfg.seed, 999, r, k), px), (k * px, r * px))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    rows = "".join(
        f"<tr><td>{esc(c['look'])}</td>" + "".join(f"<td>{esc(c['names'][lang])}</td>" for lang in languages) + "</tr>"
        for c in concepts[:n])
    head = "".join(f"<th>{esc(lang)}</th>" for lang in languages)
    return (f'<div class="strip"><img alt="drawn looks of the first concepts" width="{grid.width * 2}" '
            f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'
            f'<table class="names"><tr><th>look</th>{head}</tr>{rows}</table></div>')


def judge(d: dict, up: str, down: str) -> str:
    """The words for a paired difference: `up` or `down` when shown, else why it is not."""
    if d["n"] < 2:
        return "one seed only: it cannot be told from seed noise."
    if d["shown"]:
        return up if d["mean"] > 0 else down
    return "<b>not shown</b>: within the seed spread."


def _diffs(d: dict) -> str:
    return f"{d['mean']:+.3f} (per seed {', '.join(f'{v:+.3f}' for v in d['values'])})"


def _english_pairs(results: dict, arm: str) -> float | None:
    a = results["arms"].get(arm)
    if not a or a["english_share"]["mean"] is None or a["english_share"]["mean"] != a["english_share"]["mean"]:
        return None
    return a["english_share"]["mean"] * a["seen_pairs"]["mean"]


def verdicts(results: dict) -> list[str]:
    """Plain sentences answering the questions from the paired per-seed differences."""
    out = []
    comps = results["comparisons"]
    others = len(results["world"]["languages"]) - 1
    c = comps.get("balanced_vs_raw")
    if c:
        t, hd = c["tail_all"], c["head_all"]
        out.append(
            f"<b>Balancing vs. the raw pool</b> (equal seen pairs). Tail concepts: {_diffs(t)} — "
            + judge(t, "<b>shown</b>: the paper's effect, balanced data lifts the tail.",
                    "<b>the opposite</b> of the paper's effect at this scale.")
            + f" Head concepts: {_diffs(hd)} — "
            + judge(hd, "balancing helps the head too.",
                    "the price: the head loses some of the pairs it had (balancing caps it).")
            + (" All concepts (most are tail in a long-tailed world, so this weighs the tail's gain against the "
               f"head's loss): English {_diffs(c['en'])} — {judge(c['en'], 'up.', 'down.')}"
               f" Other languages {_diffs(c['others'])} — {judge(c['others'], 'up.', 'down.')}"
               if "en" in c and "others" in c else ""))
    c = comps.get("worldwide_vs_english")
    if c:
        en, ot = c["en"], c["others"]
        s = (f"<b>Worldwide vs. English-only</b> (equal seen pairs, equal model). English zero-shot: {_diffs(en)} — "
             + judge(en, "<b>worldwide data helps English</b> here, as in the paper's larger models.",
                     f"<b>shown</b>: at equal seen pairs, sharing them with {others} other languages costs English "
                     "at this model size, as the paper's curse of multilinguality does at its small sizes.")
             + f" Other languages: {_diffs(ot)} — "
             + judge(ot, "worldwide data is what makes them work at all.", "worldwide data hurts them (unexpected)."))
        en_w, en_e = _english_pairs(results, "balanced"), _english_pairs(results, "english")
        if en_w and en_e:
            s += (f" Its cause is not separated, though: the worldwide run saw about {en_w:,.0f} English pairs "
                  f"against the English-only run's {en_e:,.0f} ({en_e / en_w:.1f}x), so the English budget, not only "
                  "the model's capacity, can explain the cost" + (": the 'scaled' arm below gives the worldwide run more pairs."
                                                      if "scaled" in results["arms"] else
                                                      " (the optional 'scaled' arm, --arms scaled, gives the worldwide run more pairs to see how much of "
                                                      "the cost they buy back)."))
        out.append(s)
    c = comps.get("scaled_vs_english")
    if c:
        en = c["en"]
        a = results["arms"]["scaled"]
        en_s = _english_pairs(results, "scaled")
        out.append(
            f"<b>Worldwide with {results['config']['scaled_pairs']}x seen pairs vs. English-only</b> "
            f"({a['seen_pairs']['mean']:,.0f} pairs" + (f", about {en_s:,.0f} of them English" if en_s else "")
            + f", same model). English: {_diffs(en)} — "
            + judge(en, "English passes the English-only run: with its budget restored, worldwide data helps English.",
                    "English is still behind"
                    + (f" (at equal pairs the gap was {comps['worldwide_vs_english']['en']['mean']:+.3f}): more seen "
                       "pairs narrow it" if "worldwide_vs_english" in comps else ": more seen pairs do not close the gap")
                    + " at this model size; the paper too needs ViT-H/14, not only more pairs. (The scaled run "
                    "still sees fewer English pairs than the English-only one, so budget and capacity stay "
                    "entangled here.)")
            + f" Other languages: {_diffs(c['others'])}.")
    if len(results["config"]["seeds"]) < 2:
        out.append("Only one seed was run, so no difference can be told from seed noise ('shown' needs ≥ 2 seeds).")
    return out


LIMITS = [
    "The model is tiny ({layers} layers of width {width} per tower, {image_size}-pixel images) and sees {pairs:,} "
    "pairs per run; the "
    "paper's models see billions. The paper reports the curse of multilinguality to be a capacity effect: worldwide "
    "data still costs English at ViT-L/14 with 2.3x seen pairs and helps it only at ViT-H/14. This miniature has "
    "one model size, so it cannot show the cure by capacity. It also cannot give the English cost one cause: at "
    "equal seen pairs the worldwide run sees far fewer English pairs than the English-only run (the verdict above "
    "gives the numbers), so part of the cost here is budget, not capacity. The optional 'scaled' arm (--arms "
    "scaled) gives the worldwide run 2.3x the pairs; even then it sees fewer English pairs than the English-only "
    "run, so the two causes stay entangled.",
    "The raw pool is the matched pool without balancing: texts that match no entry are dropped in every arm (online "
    "curation samples a text by its entries, so an unmatched text cannot be trained on here). The paper's "
    "comparison of curated data with unfiltered web data is not rerun.",
    "The concepts' looks are arbitrary: nothing in an image relates 'goldfish' to 'tiger shark', and names do not "
    "share meaning across languages except where they share spelling or script (Latin-script cognates such as "
    "Goldfisch/goldfish). Real photos and real cross-lingual structure are what let worldwide data transfer between "
    "languages in the paper; here transfer can only go through the shared image tower.",
    "t_en is scaled to the pool (about 10^4 texts), not the paper's 170,000, so the tail proportion p and every "
    "t_lang follow from a small count table; in small languages t_lang is a few texts and most of their concepts "
    "are tail (or never named at all).",
    "Seeds vary the training (initialisation, data order, online-curation draws); the world, the pipeline and the "
    "held-out images are the same for every seed, so the spread is training noise only, not the spread over "
    "different worlds. The numbers also depend on the project's code (LID mapping, matching): the curate job's "
    "manifest records its code version.",
    "Zero-shot prompts are 8 of Babel-ImageNet's 80 translated templates, held out of the alt-texts; the alt-texts "
    "use the other 72, so the eval phrasing is unseen but close to the training phrasing — easier than real "
    "zero-shot transfer.",
]


def table_main(results: dict) -> str:
    cols = [("seen_pairs", "seen pairs"), ("en", "English top-1"), ("others", "other languages top-1"),
            ("head_all", "head top-1"),
            ("tail_all", "tail top-1"), ("seen_effective_concepts", "effective concepts seen"),
            ("seen_top20_share", "seen pairs on top-20% concepts"), ("kept_share", "kept per epoch"),
            ("epochs", "epochs"), ("last_loss", "final loss")]
    rows = []
    for arm, a in results["arms"].items():
        digits = {"seen_pairs": 0, "seen_effective_concepts": 1, "epochs": 1}
        cells = "".join(f"<td>{pm(a[k], digits.get(k, 3))}</td>" for k, _ in cols)
        rows.append(f'<tr><th style="color:{COLOURS.get(arm, "#000")}">{esc(ARMS[arm]["label"])}</th>{cells}</tr>')
    head = "".join(f"<th>{esc(t)}</th>" for _, t in cols)
    return f'<table class="main"><tr><th>run (mean ± std over seeds)</th>{head}</tr>{"".join(rows)}</table>'


def table_runs(results: dict) -> str:
    """One row per training run: the spread behind every mean ± std."""
    keys = (("en", "English"), ("others", "other languages"), ("head_all", "head"), ("tail_all", "tail"))
    rows = []
    for r in sorted(results["runs"], key=lambda r: (list(results["arms"]).index(r["arm"]), r["seed"])):
        cells = "".join(f"<td>{r[k]:.3f}</td>" for k, _ in keys)
        rows.append(f'<tr><th style="color:{COLOURS.get(r["arm"], "#000")}">{esc(ARMS[r["arm"]]["label"])}</th>'
                    f"<td>{r['seed']}</td>{cells}<td>{r['seen_pairs']:,}</td><td>{r['epochs']}</td>"
                    f"<td>{r['seconds']:.0f}</td></tr>")
    head = "".join(f"<th>{t} top-1</th>" for _, t in keys)
    return (f'<table class="runs"><tr><th>run</th><th>seed</th>{head}<th>seen pairs</th><th>epochs</th>'
            f'<th>train s</th></tr>{"".join(rows)}</table>')


def table_timings(results: dict) -> str:
    t = results["timings_s"]
    total = t.get("total") or sum(v for k, v in t.items() if k != "total") or 1
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v:.1f}</td><td>{100 * v / total:.0f}%</td></tr>"
                   for k, v in t.items() if k != "total")
    return (f'<table class="timings"><tr><th>phase</th><th>seconds</th><th>share</th></tr>{rows}'
            f'<tr><th>total</th><td>{total:.1f}</td><td></td></tr></table>')


def markdown_table(results: dict) -> str:
    """The main numbers as a Markdown table (for a README): mean ± std over seeds."""
    cols = (("en", "English top-1"), ("others", "other languages top-1"), ("head_all", "head top-1"),
            ("tail_all", "tail top-1"), ("seen_effective_concepts", "effective concepts seen"))
    lines = ["| run (mean ± std over seeds " + ", ".join(map(str, results["config"]["seeds"])) + ") | "
             + " | ".join(t for _, t in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for arm, a in results["arms"].items():
        lines.append(f"| {ARMS[arm]['label']} | " + " | ".join(pm(a[k], 1 if k == "seen_effective_concepts" else 3)
                                                              for k, _ in cols) + " |")
    lines += ["", "| paired difference (per seed) | mean | per seed | shown |", "|---|---|---|---|"]
    names = {"tail_all": "tail", "head_all": "head", "tail_others": "tail, other languages", "en": "English",
             "others": "other languages"}
    for c in results["comparisons"].values():
        for k, d in c.items():
            if isinstance(d, dict):
                lines.append(f"| {c['a']} − {c['b']}: {names.get(k, k)} | {d['mean']:+.3f} | "
                             + ", ".join(f"{v:+.3f}" for v in d["values"]) + f" | {'yes' if d['shown'] else 'no'} |")
    return "\n".join(lines) + "\n"


def table_languages(results: dict, languages: list[str]) -> str:
    rows = []
    for arm, a in results["arms"].items():
        for key, what in (("top1", "top-1"), ("head", "head"), ("tail", "tail")):
            cells = "".join(f"<td>{pm(a[key][lang])}</td>" for lang in languages)
            rows.append(f'<tr><th style="color:{COLOURS.get(arm, "#000")}">{esc(ARMS[arm]["label"])}</th>'
                        f"<td>{what}</td>{cells}</tr>")
    idx = results["index"]
    rows.append("<tr><th>t_lang</th><td></td>" + "".join(f"<td>{idx[lang]['t']}</td>" for lang in languages) + "</tr>")
    rows.append("<tr><th>head concepts (count &gt; t)</th><td></td>" +
                "".join(f"<td>{idx[lang]['head_concepts']}</td>" for lang in languages) + "</tr>")
    rows.append("<tr><th>matched texts</th><td></td>" +
                "".join(f"<td>{idx[lang]['matched_texts']:,}</td>" for lang in languages) + "</tr>")
    head = "".join(f"<th>{esc(lang)}</th>" for lang in languages)
    return f'<table class="langs"><tr><th>run</th><th></th>{head}</tr>{"".join(rows)}</table>'


def funnel(results: dict) -> str:
    p = results["pipeline"]
    st = p["curate"]["stages"]
    rows = [("alt-text records in the pool", p["pool"]["records"], ", ".join(f"{k} {v:,}" for k, v in
                                                                              p["pool"]["by_kind"].items()))]
    for name in ("read", "extract", "lid", "match", "group", "sample"):
        if name in st:
            rej = ", ".join(f"{k} {v:,}" for k, v in st[name]["rejected"].items()) or "–"
            rows.append((f"curate: {name}", st[name]["out"], f"in {st[name]['in']:,}; rejected: {rej}"))
    leaks = p.get("matched_images_by_truth")
    if leaks:
        rows.append(("matched images, by what they really are", sum(leaks.values()),
                     f"{leaks.get('ok', 0):,} as meant; {leaks.get('mismatch', 0):,} with a text on the wrong image "
                     f"(web label noise, kept: no text filter can see it); {leaks.get('noise', 0):,} noise images "
                     "whose text matched an entry anyway (in no-space scripts an entry matches inside a word)"))
    d = p["download"]
    rows.append(("download: image shards", d["succeeded"], f"{d['input_rows']:,} matched images asked, "
                                                           f"{d['failed']} failed, {d['shards']} shards"))
    rows.append(("metadata entries", p["metadata"]["entries"], f"{p['metadata']['languages']} languages (with "
                                                               f"'other'), version {p['metadata']['version']}"))
    body = "".join(f"<tr><th>{esc(a)}</th><td>{b:,}</td><td>{esc(c)}</td></tr>" for a, b, c in rows)
    return f'<table class="funnel"><tr><th>stage</th><th>out</th><th>detail</th></tr>{body}</table>'


CSS = """body{font-family:sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th:first-child{text-align:left}.verdict{background:#f4f8f4;border-left:4px solid #1b9e77;padding:8px 14px;margin:8px 0}
.strip{display:flex;gap:16px;align-items:flex-start}.strip img{image-rendering:pixelated}
.names td,.names th{font-size:12px}.note{color:#555;font-size:13px}svg{display:block;margin:8px 0}"""


def to_html(results: dict) -> str:
    cfg, world = results["config"], results["world"]
    languages = list(world["languages"])
    arms = list(results["arms"])
    seen_pairs = results["seen_pairs_per_run"]
    m = results["pipeline"].get("machine", {})
    scripts = ", ".join(f"{lang} ({v['script']})" for lang, v in world["languages"].items())
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>worldclip: the paper's effect in miniature"
             f"</title><style>{CSS}</style></head><body>",
             "<h1>The paper's effect in miniature</h1>",
             f"<p>MetaCLIP 2's two claims, rerun on a synthetic world through this project's own metadata build, "
             f"curate job, download job and trainer: <b>{world['concepts']}</b> Babel-ImageNet concepts named in "
             f"<b>{len(languages)}</b> languages ({scripts}), "
             f"each with its own drawn look; <b>{len(results['runs'])}</b> training runs "
             f"({len(arms)} arms × {len(cfg['seeds'])} seeds {cfg['seeds']}) of the same model for the same "
             f"<b>{seen_pairs:,}</b> seen pairs ({cfg['steps']} steps × {cfg['batch_size']}). Wall time "
             f"{results['timings_s'].get('total', 0):.0f} s on {m.get('cpu_count', '?')} CPU cores (load average "
             f"{m.get('load_average_start', ['?'])[0]} at the start, {m.get('load_average_end', ['?'])[0]} at the "
             f"end: other work on the cores stretches it).</p>",
             "<h2>What it shows</h2>"]
    n_seeds = len(cfg["seeds"])
    parts.append(f'<p class="note">How to read it: each arm was trained {n_seeds} times (training seeds '
                 f"{cfg['seeds']}: initialisation, data order and online-curation draws; the world and the pipeline "
                 "stay the same). A difference between two arms is taken seed by seed (same seed, only the arm "
                 "differs) and called <b>shown</b> only when it has the same sign for every seed and its mean is more "
                 "than twice its standard error; otherwise it is reported as not shown. Chance is "
                 f"1/{world['concepts']} = {1 / world['concepts']:.3f}.</p>")
    parts += [f'<div class="verdict">{v}</div>' for v in verdicts(results)]
    parts.append("<h2>Table</h2>" + table_main(results))
    parts.append('<p class="note">Top-1: zero-shot over all concepts on held-out drawings, prompts in the '
                 "language. Head: the concepts whose entry count exceeds the language's t (the ones balancing caps); "
                 "tail: the rest; both are means over concepts, then over all languages (so the English-only run's "
                 "head and tail are low: it cannot read the other languages; its English head and tail are in the "
                 "per-language table). Effective concepts seen: "
                 "exp(entropy) of the training pairs' concept distribution. Kept per epoch: images the online "
                 "curation keeps of those it reads.</p>")
    parts.append("<h3>Every run</h3>" + table_runs(results))
    # plots
    groups = ["head", "tail", "English", "other languages"]
    keys = ["head_all", "tail_all", "en", "others"]
    series = [(ARMS[a]["label"], COLOURS.get(a, GREY), [results["arms"][a][k]["mean"] for k in keys],
               [results["arms"][a][k]["values"] for k in keys]) for a in arms]
    parts.append(bar_chart(groups, series, "Zero-shot top-1: head vs tail, English vs the other languages",
                           "top-1"))
    series = [(ARMS[a]["label"], COLOURS.get(a, GREY), [results["arms"][a]["top1"][lang]["mean"] for lang in languages],
               [results["arms"][a]["top1"][lang]["values"] for lang in languages]) for a in arms]
    parts.append(bar_chart(languages, series, "Zero-shot top-1 per language", "top-1", width=960))
    bins = [b["bin"] for b in next(iter(results["arms"].values()))["by_frequency"]]
    worldwide = [a for a in arms if ARMS[a]["data"] == "worldwide"] or arms  # the balancing question's arms
    series = [(ARMS[a]["label"], COLOURS.get(a, GREY),
               [b["acc"]["mean"] if b["acc"] else None for b in results["arms"][a]["by_frequency"]])
              for a in worldwide]
    parts.append(line_chart(bins, series, "Top-1 by how often the language's pool names the concept", "top-1",
                            xlabel="matched texts naming the concept in that language (all languages pooled)"))
    order = sorted(range(len(results["pool_counts"])), key=lambda i: -results["pool_counts"][i])
    series = [(ARMS[a]["label"], COLOURS.get(a, GREY), [results["arms"][a]["seen_mean"][i] for i in order])
              for a in worldwide]
    series.append(("pool: matched texts", GREY, [results["pool_counts"][i] for i in order]))
    parts.append(line_chart([str(i + 1) for i in range(len(order))], series,
                            "Training pairs per concept (what each run saw), concepts by pool frequency",
                            "pairs (log)", log=True, xlabel="concept rank in the matched pool", show_points=False))
    parts.append("<h2>Per language</h2>" + table_languages(results, languages))
    parts.append("<h2>The pipeline</h2>" + funnel(results))
    parts.append("<p class='note'>" + "; ".join(f"{esc(a)}: {esc(ARMS[a]['what'])}" for a in arms) + ".</p>")
    parts.append("<h3>The world</h3>" + look_strip(world["config"], world["examples"], languages))
    sizes = {"pairs": seen_pairs, "layers": cfg["layers"], "width": cfg["width"], "image_size": cfg["image_size"]}
    parts.append("<h2>What the miniature does not show, and why</h2><ul>" +
                 "".join(f"<li>{esc(t.format(**sizes))}</li>" for t in LIMITS) + "</ul>")
    parts.append("<h2>Run</h2>" + table_timings(results))
    parts.append(f"<p class='note'>World seed {world['config']['seed']}, "
                 f"training seeds {cfg['seeds']}. Every number is in reproduce.json; the work directory holds the "
                 f"jobs' outputs (metadata/, curate/ with its own report.html, images/) and every run's "
                 f"metrics.jsonl, samples and eval.json.</p></body></html>")
    return "".join(parts)


def finite(x):
    """NaN (a language without head concepts, a share not measured) as null: reproduce.json stays strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def write(out: Path, results: dict) -> None:
    with atomic_local_path(out / "reproduce.json") as tmp:
        Path(tmp).write_text(json.dumps(finite(results), indent=1, ensure_ascii=False, allow_nan=False),
                             encoding="utf-8")
    with atomic_local_path(out / "reproduce.html") as tmp:
        Path(tmp).write_text(to_html(results), encoding="utf-8")
    with atomic_local_path(out / "reproduce.md") as tmp:
        Path(tmp).write_text(markdown_table(results), encoding="utf-8")


def headline(results: dict) -> dict:
    """The machine-readable summary line."""
    out = {"output": results["config"]["output"], "seconds": results["timings_s"].get("total"),
           "concepts": results["world"]["concepts"], "languages": len(results["world"]["languages"]),
           "seeds": results["config"]["seeds"], "seen_pairs_per_run": results["seen_pairs_per_run"]}
    for arm, a in results["arms"].items():
        out[arm] = {k: round(a[k]["mean"], 4) for k in ("en", "others", "head_all", "tail_all")}
    for name, c in results["comparisons"].items():
        out[name] = {k: {"mean": round(v["mean"], 4), "shown": v["shown"]} for k, v in c.items()
                     if isinstance(v, dict)}
    return out


def summary_text(results: dict) -> str:
    lines = [f"reproduce: {len(results['runs'])} runs, {results['seen_pairs_per_run']:,} seen pairs each, "
             f"{results['timings_s'].get('total', 0):.0f} s -> {results['config']['output']}/reproduce.html",
             f"{'run':28s} {'English':>15s} {'other langs':>15s} {'head':>15s} {'tail':>15s}"]
    for arm, a in results["arms"].items():
        lines.append(f"{ARMS[arm]['label']:28s} " + " ".join(f"{pm(a[k]):>15s}" for k in ("en", "others", "head_all",
                                                                                          "tail_all")))
    for v in verdicts(results):
        lines.append(html.unescape(v.replace("<b>", "").replace("</b>", "")))
    return "\n".join(lines)
