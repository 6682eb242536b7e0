"""curation.report: report.json content and a self-contained report.html with well-formed SVG plots."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import numpy as np

from curation import balance, report


def _inputs():
    rng = np.random.default_rng(1)
    counts = {"en": np.sort(rng.zipf(1.5, 300).astype(np.int64))[::-1].copy(), "de": rng.zipf(1.7, 80).astype(np.int64),
              "ja": np.zeros(20, np.int64)}
    th = balance.language_thresholds(counts, 5)
    after = {lang: np.minimum(c, max(th[lang]["t"], 1)) for lang, c in counts.items()}
    accounting = {
        "read": {"unit": "records", "in": 10, "out": 7, "rejected": {"not_response": 2, "malformed_json": 1}},
        "match": {"unit": "texts", "in": 50, "out": 40, "rejected": {"no_match": 10}},
    }
    return dict(accounting=accounting, thresholds=th, counts_by_lang=counts, curated_counts_by_lang=after,
                matched_by_lang={"en": 400, "de": 90}, lid_langs={"en": 420, "de": 95, "ja": 3},
                rows={"inputs": 2, "images": 300, "matched_texts": 490, "curated": 120, "counts": 380, "rejects": 1},
                t_en=5, en_lang="en", metadata_version="v-test")


def test_report_json_holds_thresholds_distributions_and_reasons():
    rep = report.build_report(**_inputs())
    json.dumps(rep)  # plain JSON values only
    by_lang = {x["lang"]: x for x in rep["languages"]}
    assert by_lang["en"]["t"] == 5 and by_lang["ja"]["matched_entries"] == 0
    assert by_lang["en"]["head_entries"] == int((_inputs()["counts_by_lang"]["en"] > 5).sum())
    assert rep["reject_reasons"]["read:not_response"] == 2 and rep["all_stages_balanced"]
    assert list(rep["distributions"]) == ["en", "de"]  # languages with matches, most matched first
    curve = rep["distributions"]["en"]["before"]["rank_curve"]
    assert curve[0][0] == 1 and all(a[1] >= b[1] for a, b in zip(curve, curve[1:], strict=False))
    assert max(c for _, c in rep["distributions"]["en"]["after"]["rank_curve"]) <= 5


def test_report_flags_unbalanced_stage():
    inputs = _inputs()
    inputs["accounting"]["match"]["out"] = 41
    rep = report.build_report(**inputs)
    assert not rep["all_stages_balanced"]
    assert "UNBALANCED" in report.render_html(rep)


def test_html_is_self_contained_with_wellformed_svg(tmp_path):
    rep = report.build_report(**_inputs())
    json_path, html_path = report.write_report(rep, str(tmp_path))
    assert json.load(open(json_path)) == json.loads(json.dumps(rep))
    page = open(html_path, encoding="utf-8").read()
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 4  # languages bars, two distributions, reject reasons
    for svg in svgs:
        ET.fromstring(svg)
    assert "<script" not in page and not re.search(r"""(src|href)=["']https?:""", page)
    assert "t_lang per language" in page and "not_response" in page and "every stage balances" in page


def _svg_with(page: str, needle: str) -> str:
    return next(s for s in re.findall(r"<svg.*?</svg>", page, flags=re.S) if needle in s)


def test_curated_images_per_language_in_json_table_and_chart():
    rep = report.build_report(**_inputs(), curated_by_lang={"en": 85, "de": 35})
    by_lang = {x["lang"]: x for x in rep["languages"]}
    assert by_lang["en"]["curated_images"] == 85 and by_lang["ja"]["curated_images"] == 0
    assert abs(by_lang["de"]["curated_share"] - 35 / 120) < 1e-12
    page = report.render_html(rep)
    chart = _svg_with(page, "per language (log scale)")
    assert "curated images" in chart and "en curated images: 85" in chart
    assert "<th>curated images</th>" in page and "<td>29.17%</td>" in page  # de: 35 of 120 curated
    # without it the job has not passed the numbers: said so, not shown as 0
    bare = report.build_report(**_inputs())
    assert {x["curated_images"] for x in bare["languages"]} == {None}
    assert "not passed by the job" in report.render_html(bare)


def _bar_widths(svg: str) -> dict[str, float]:
    return {m[1]: float(m[0]) for m in re.findall(r'width="([\d.]+)" height="11"[^>]*><title>(\w+) ', svg)}


def test_language_bars_are_on_a_log_scale():
    svg = report.svg_bars([("big", [10_000]), ("small", [10])], ["n"], "t", log=True)
    w = _bar_widths(svg)
    assert abs(w["small"] / w["big"] - 0.25) < 0.01  # log10(10) / log10(10_000), linear would be 0.001
    page = report.render_html(report.build_report(**_inputs(), curated_by_lang={"en": 85, "de": 35}))
    chart = _svg_with(page, "per language (log scale)")
    w = _bar_widths(chart)
    assert 0.5 < w["de"] / w["en"] < 1  # texts (LID) 95 vs 420: log 0.75, linear 0.23
    assert ">100<" in chart and ">10<" in chart  # decade ticks


def test_head_tail_and_at_t_follow_balance_and_are_stated_once():
    inputs = _inputs()
    c = np.array([0, 0, 1, 2, 5, 5, 5, 9, 30], np.int64)  # t = 5 for en: three entries at t
    inputs["counts_by_lang"] = {**inputs["counts_by_lang"], "en": c}
    inputs["curated_counts_by_lang"] = {**inputs["curated_counts_by_lang"], "en": np.minimum(c, 5)}
    inputs["thresholds"] = balance.language_thresholds(inputs["counts_by_lang"], 5)
    rep = report.build_report(**inputs)
    en = next(x for x in rep["languages"] if x["lang"] == "en")
    assert (en["tail_entries"], en["at_t_entries"], en["head_entries"]) == (2, 3, 2)
    assert en["tail_entries"] + en["at_t_entries"] + en["head_entries"] == en["matched_entries"]
    assert en["tail_proportion"] == balance.tail_proportion(c, 5) == 3 / 57  # sum(c[c < t]) / sum(c)
    probs = balance.entry_probabilities(c, 5)
    assert int((probs < 1).sum()) == en["head_entries"]  # head = the entries balancing subsamples
    page = report.render_html(rep)
    assert page.count("neither head nor tail") == 1 and page.count("p = sum(c[c &lt; t]) / sum(c)") == 1
    assert "tail entries (0 &lt; c &lt; t)" in page and "entries at t (c = t)" in page
    assert "head entries (c &gt; t)" in page


def test_balancing_is_explained_and_plotted_per_entry():
    inputs = _inputs()
    c = inputs["counts_by_lang"]["en"]
    after = np.minimum(c, 5)
    after[0] = 12  # a head entry whose texts were also kept for another (probability 1) entry
    inputs["curated_counts_by_lang"] = {**inputs["curated_counts_by_lang"], "en": after}
    rep = report.build_report(**inputs)
    d = rep["distributions"]["en"]
    assert d["entries_above_t_after"] == 1
    bins = d["per_entry"]
    assert sum(b["entries"] for b in bins) == int((c > 0).sum())
    assert max(b["max_after"] for b in bins) == 12 and all(b["c_from"] <= b["mean_c"] <= b["c_to"] for b in bins)
    page = report.render_html(rep)
    assert "flattens the head" not in page
    assert "1 - prod(1 - p_e)" in page and "is not cut flat at t" in page
    svg = _svg_with(page, "en: per entry, 1 end above t")
    ET.fromstring(svg)
    assert "min(c, t)" in svg and "no balancing: c" in svg and "t=5" in svg


def test_distribution_plots_say_which_languages_are_shown():
    inputs = _inputs()
    rng = np.random.default_rng(2)
    extra = [f"x{i}" for i in range(9)]
    counts = {**inputs["counts_by_lang"], **{k: rng.zipf(1.8, 30).astype(np.int64) for k in extra}}
    inputs["counts_by_lang"] = counts
    inputs["thresholds"] = balance.language_thresholds(counts, 5)
    inputs["curated_counts_by_lang"] = {k: np.minimum(v, max(inputs["thresholds"][k]["t"], 1)) for k, v in counts.items()}
    inputs["matched_by_lang"] = {**inputs["matched_by_lang"], **{k: 50 - i for i, k in enumerate(extra)}}
    rep = report.build_report(**inputs)
    assert list(rep["distributions"]) == ["en", "de", *extra[:6]] and rep["distributions_omitted"] == extra[6:]
    page = report.render_html(rep)
    assert "Shown: the 8 languages with the most matched texts (en, de, x0, x1, x2, x3, x4, x5)" in page
    assert "Not plotted: x6, x7, x8; their numbers are in the tables below and in report.json" in page


def test_rejects_are_separated_by_stage_and_errors_apart_from_filtering():
    rep = report.build_report(**_inputs())
    read = rep["rejects_by_stage"]["read"]
    assert read["unit"] == "records" and read["filtered"] == {"not_response": 2}
    assert read["errors"] == {"malformed_json": 1} and rep["errors"] == 1
    assert rep["rejects_by_stage"]["match"] == {"unit": "texts", "in": 50, "out": 40, "filtered": {"no_match": 10},
                                                "errors": {}}
    page = report.render_html(rep)
    assert "rejected / skipped by stage:reason" not in page  # no chart mixing stages and units
    assert "read <span class='note'>&mdash; unit: records" in page and "match <span class='note'>&mdash; unit: texts" in page
    errors = _svg_with(page, "read: errors")
    assert "malformed_json" in errors and "not_response" not in errors and report.ERROR_COLOUR in errors
    assert "1 (10.0%)" in errors  # a share of the stage's 10 records
    filtered = _svg_with(page, "match: filtered")
    assert "no_match" in filtered and "10 (20.0%)" in filtered
    assert "Errors: 1" in page and "match: no errors" in page
    # the accounting table keeps the two apart too
    assert "<td>malformed_json: 1</td>" in page and "<td>not_response: 2</td>" in page
