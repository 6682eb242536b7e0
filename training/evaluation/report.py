"""Human-readable results: per-language tables for the terminal and one self-contained HTML page.

The HTML has no scripts and no external files (it is opened from a cluster's shared disk or a
CI artifact): a table per benchmark with a CSS bar per language, so weak languages stand out.
"""

from __future__ import annotations

import html

RETRIEVAL_TITLES = {"xm3600": "XM3600 retrieval", "xtd": "XTD retrieval"}


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def babel_table(r: dict) -> str:
    lines = [f"Babel-ImageNet zero-shot top-1: {r['languages_scored']} languages, prompts {r['prompt_mode']}, "
             f"{r['images']} images ({r['layout']} folders)",
             f"{'lang':8s} {'name':22s} {'classes':>7s} {'images':>7s} {'prompts':>10s} {'top1':>7s}"]
    for lang, x in r["languages"].items():
        lines.append(f"{lang:8s} {x['name'][:22]:22s} {x['classes']:7d} {x['images']:7d} {x['prompts']:>10s} "
                     f"{x['top1']:7.3f}")
    lines.append(f"{'mean':8s} {'':22s} {'':7s} {'':7s} {'':10s} {_f(r['mean_top1']):>7s}")
    if r["languages_without_images"]:
        lines.append(f"(no images for the classes of {len(r['languages_without_images'])} language(s): "
                     f"{', '.join(r['languages_without_images'][:10])})")
    return "\n".join(lines)


def retrieval_table(name: str, r: dict) -> str:
    ks = sorted({int(k.split("_r")[1]) for k in r["mean"]})
    head = " ".join(f"i2t@{k:<3d}" for k in ks) + "  " + " ".join(f"t2i@{k:<3d}" for k in ks)
    lines = [f"{RETRIEVAL_TITLES.get(name, name)}: {r['locales_scored']} locales, {r['images']} images",
             f"{'locale':8s} {'images':>6s} {'texts':>6s}  {head}"]

    def row(label, x, n_img="", n_txt=""):
        vals = " ".join(f"{_f(x[f'i2t_r{k}']):7s}" for k in ks) + "  " + " ".join(f"{_f(x[f't2i_r{k}']):7s}" for k in ks)
        return f"{label:8s} {n_img!s:>6s} {n_txt!s:>6s}  {vals}"

    for loc, x in r["locales"].items():
        lines.append(row(loc, x, x["images"], x["texts"]))
    lines.append(row("mean", r["mean"]))
    lines.append(f"mean recall over locales, metrics and k: {_f(r['mean_recall'])}")
    return "\n".join(lines)


def cvqa_table(r: dict) -> str:
    lines = [f"CVQA multiple choice ({r['text']} text): {r['locales_scored']} subsets, {r['questions']} questions"
             + (f", {r['unlabeled']} without a label left out" if r["unlabeled"] else ""),
             f"{'subset':32s} {'questions':>9s} {'chance':>7s} {'accuracy':>8s}"]
    for sub, x in r["locales"].items():
        lines.append(f"{sub[:32]:32s} {x['questions']:9d} {x['chance']:7.3f} {x['accuracy']:8.3f}")
    lines.append(f"{'mean':32s} {'':9s} {'':7s} {_f(r['mean_accuracy']):>8s}")
    return "\n".join(lines)


def format_tables(results: dict) -> str:
    parts = []
    if "babel_imagenet" in results:
        parts.append(babel_table(results["babel_imagenet"]))
    for name in ("xm3600", "xtd"):
        if name in results:
            parts.append(retrieval_table(name, results[name]))
    if "cvqa" in results:
        parts.append(cvqa_table(results["cvqa"]))
    return "\n\n".join(parts)


def summary_line(results: dict) -> str:
    bits = []
    if "babel_imagenet" in results:
        r = results["babel_imagenet"]
        bits.append(f"Babel-ImageNet mean top-1 {_f(r['mean_top1'])} over {r['languages_scored']} languages")
    for name in ("xm3600", "xtd"):
        if name in results:
            r = results[name]
            bits.append(f"{RETRIEVAL_TITLES[name]} mean i2t R@1 {_f(r['mean'].get('i2t_r1'))}, "
                        f"t2i R@1 {_f(r['mean'].get('t2i_r1'))} over {r['locales_scored']} locales")
    if "cvqa" in results:
        r = results["cvqa"]
        bits.append(f"CVQA mean accuracy {_f(r['mean_accuracy'])} over {r['locales_scored']} subsets")
    if "heldout" in results:
        bits.append(f"held-out retrieval over {len(results['heldout']['retrieval'])} languages")
    return "; ".join(bits) if bits else "nothing evaluated"


# --- HTML -------------------------------------------------------------------------------------------

_CSS = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0 2em}
td,th{padding:2px 8px;text-align:right;white-space:nowrap}th{border-bottom:1px solid #999}td.l,th.l{text-align:left}
.bar{background:#4a7bd0;height:12px}.chance{background:#bbb;height:4px}tr.mean td{border-top:1px solid #999;font-weight:600}
"""


def _bar(v, chance=None) -> str:
    w = 0 if v is None else max(0.0, min(1.0, v)) * 240
    c = "" if chance is None else f'<div class="chance" style="width:{max(0.0, min(1.0, chance)) * 240:.1f}px"></div>'
    return f'<td class="l"><div class="bar" style="width:{w:.1f}px"></div>{c}</td>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f'<th class="l">{html.escape(h)}</th>' if i == 0 else f"<th>{html.escape(h)}</th>"
                 for i, h in enumerate(head))
    return f"<table><tr>{th}</tr>{''.join(rows)}</table>"


def to_html(results: dict, title: str = "Evaluation") -> str:
    e = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style>",
             f"<h1>{e(title)}</h1><p>{e(summary_line(results))}</p>"]
    if "babel_imagenet" in results:
        r = results["babel_imagenet"]
        rows = [f"<tr><td class='l'>{e(k)}</td><td class='l'>{e(x['name'])}</td><td>{x['classes']}</td>"
                f"<td>{x['images']}</td><td>{e(x['prompts'])}</td><td>{_f(x['top1'])}</td>"
                f"{_bar(x['top1'], x['chance'])}</tr>"
                for k, x in sorted(r["languages"].items(), key=lambda kv: -kv[1]["top1"])]
        rows.append(f"<tr class='mean'><td class='l'>mean</td><td></td><td></td><td></td><td></td>"
                    f"<td>{_f(r['mean_top1'])}</td>{_bar(r['mean_top1'])}</tr>")
        parts.append("<h2>Babel-ImageNet zero-shot top-1</h2><p>grey: chance</p>"
                     + _table(["lang", "name", "classes", "images", "prompts", "top-1", ""], rows))
    for name in ("xm3600", "xtd"):
        if name not in results:
            continue
        r = results[name]
        rows = [f"<tr><td class='l'>{e(k)}</td><td>{x['images']}</td><td>{x['texts']}</td><td>{_f(x['i2t_r1'])}</td>"
                f"<td>{_f(x['t2i_r1'])}</td><td>{_f(x.get('i2t_r10'))}</td><td>{_f(x.get('t2i_r10'))}</td>"
                f"{_bar(x['i2t_r1'])}{_bar(x['t2i_r1'])}</tr>" for k, x in r["locales"].items()]
        m = r["mean"]
        rows.append(f"<tr class='mean'><td class='l'>mean</td><td></td><td></td><td>{_f(m.get('i2t_r1'))}</td>"
                    f"<td>{_f(m.get('t2i_r1'))}</td><td>{_f(m.get('i2t_r10'))}</td><td>{_f(m.get('t2i_r10'))}</td>"
                    f"{_bar(m.get('i2t_r1'))}{_bar(m.get('t2i_r1'))}</tr>")
        parts.append(f"<h2>{e(RETRIEVAL_TITLES[name])}</h2>"
                     + _table(["locale", "images", "texts", "I→T R@1", "T→I R@1", "I→T R@10", "T→I R@10",
                               "I→T R@1", "T→I R@1"], rows))
    if "cvqa" in results:
        r = results["cvqa"]
        rows = [f"<tr><td class='l'>{e(k)}</td><td>{x['questions']}</td><td>{_f(x['chance'])}</td>"
                f"<td>{_f(x['accuracy'])}</td>{_bar(x['accuracy'], x['chance'])}</tr>" for k, x in r["locales"].items()]
        rows.append(f"<tr class='mean'><td class='l'>mean</td><td></td><td></td><td>{_f(r['mean_accuracy'])}</td>"
                    f"{_bar(r['mean_accuracy'])}</tr>")
        parts.append(f"<h2>CVQA multiple choice ({e(r['text'])} text)</h2><p>grey: chance</p>"
                     + _table(["subset", "questions", "chance", "accuracy", ""], rows))
    return "\n".join(parts) + "\n"
