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
