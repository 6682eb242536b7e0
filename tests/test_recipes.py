"""`--recipe reference`: one preset switches every documented difference back to the reference.

Each setting of the recipe is checked twice: the jobs' command lines give it, and the code it
drives behaves as the reference does with it and as the project does without it. The table in
curation/REFERENCE_DIFFERENCES.md and the recipe must not drift apart.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import config_cli, recipes
from curation.curate_config import CurateConfig
from curation.curate_config import add_arguments as curate_arguments
from curation.curate_config import config_from_args as curate_config
from curation.matcher import build_automaton, match_ids
from curation.text import pad_entry
from metadata.config import MetadataConfig
from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "curation" / "REFERENCE_DIFFERENCES.md"

# settings named in the table that are not the reference's behaviour but the project's
# alternative to it (the reference's behaviour is already the default), or inputs rather than
# switches: the recipe leaves them alone
NOT_SWITCHES = {"word_split", "pmi_total", "segmenters", "imported_replaces_build", "metaclip1_languages"}


def _metadata(argv: list[str]) -> MetadataConfig:
    p = argparse.ArgumentParser()
    config_cli.add_config_arguments(p, MetadataConfig, section="metadata")
    return config_cli.config_from_args(MetadataConfig, p.parse_args(argv), section="metadata")


def _curate(argv: list[str]) -> CurateConfig:
    p = argparse.ArgumentParser()
    curate_arguments(p)
    return curate_config(p.parse_args(argv))


REFERENCE_METADATA = _metadata(["--recipe", "reference"])
REFERENCE_CURATE = _curate(["--recipe", "reference"])


def test_the_recipe_sets_real_fields_to_values_that_differ_from_the_defaults():
    classes = {"metadata": MetadataConfig, "curate": CurateConfig}
    for section, values in recipes.sections("reference").items():
        default = classes[section]()
        for name, value in values.items():
            assert getattr(default, name) != value, f"{section}.{name}: the default already is the reference"
    assert REFERENCE_METADATA.to_dict() == {**MetadataConfig().to_dict(), **recipes.values("reference", "metadata")}
    assert REFERENCE_CURATE.to_dict() == {**CurateConfig().to_dict(), **recipes.values("reference", "curate")}
    assert _metadata(["--recipe", "project"]) == MetadataConfig()


def test_every_switch_in_the_differences_table_is_in_the_recipe():
    text = TABLE.read_text(encoding="utf-8")
    named = set(re.findall(r"`(?:--)?([a-z][a-z0-9_-]*)[ =][^`]*`", text))
    fields = {f.replace("-", "_") for f in named}
    known = set(MetadataConfig().to_dict()) | set(CurateConfig().to_dict())
    switches = (fields & known) - NOT_SWITCHES
    in_recipe = {name for values in recipes.sections("reference").values() for name in values}
    assert switches, "the table names no settings: the pattern above no longer reads it"
    assert switches <= in_recipe, f"table settings missing from the reference recipe: {sorted(switches - in_recipe)}"
    for name in in_recipe:
        assert name in text.replace("-", "_"), f"{name}: in the recipe but not documented in {TABLE.name}"


def test_file_set_and_flags_override_the_recipe(tmp_path):
    cfg_file = tmp_path / "m.json"
    cfg_file.write_text(json.dumps({"metadata": {"entry_padding": "project"}}))
    cfg = _metadata(["--recipe", "reference", "--config", str(cfg_file)])
    assert cfg.entry_padding == "project" and cfg.bigrams_across_lines  # the file wins where it speaks
    cfg = _metadata(["--recipe", "reference", "--set", "bigrams_across_lines=false"])
    assert not cfg.bigrams_across_lines and cfg.wordnet_cut_name_at_dot
    assert _curate(["--recipe", "reference", "--count-identical-texts", "once"]).count_identical_texts == "once"
    with pytest.raises(SystemExit):
        _metadata(["--recipe", "nonesuch"])


# --- each difference switches --------------------------------------------------------------------


def _matches(entries: list[str], padding: str, text: str) -> list[str]:
    automaton = build_automaton(entries, padding)
    return sorted(entries[i] for i in match_ids(automaton, text).tolist())


def test_entry_padding_switches():
    entries = ["U.S.", "カメラ", "«Paris»", "中国", "cat"]
    project, reference = MetadataConfig().entry_padding, REFERENCE_METADATA.entry_padding
    # an entry with wrapped punctuation inside: the project spaces it as the text is spaced
    assert _matches(entries, project, "the U.S. army") == ["U.S."]
    assert _matches(entries, reference, "the U.S. army") == []
    # an entry ending in kana: the reference pads it, so it matches only between spaces
    assert _matches(entries, project, "新しいカメラです") == ["カメラ"]
    assert _matches(entries, reference, "新しいカメラです") == []
    assert _matches(entries, reference, "新しい カメラ です") == ["カメラ"]
    # punctuation class: "«" and "»" are Unicode punctuation but not the reference's
    assert _matches(entries, project, "le «Paris»-style") == ["«Paris»"]
    assert _matches(entries, reference, "le «Paris»-style") == []
    # where both rules agree
    for padding in (project, reference):
        assert _matches(entries, padding, "我爱中国菜 and a cat") == ["cat", "中国"]
    assert pad_entry("U.S.", reference) == " U.S." and pad_entry("U.S.", project) == " U . S ."


def test_wordnet_names_switch():
    path = str(shared_file("wordnet/wordnet-3.0-en/data.noun.xz"))
    from metadata.wordnet import synset_names

    def names(cfg: MetadataConfig) -> set[str]:
        return set(synset_names(path, cut_at_dot=cfg.wordnet_cut_name_at_dot))

    project, reference = names(MetadataConfig()), names(REFERENCE_METADATA)
    assert "st. andrew's cross" in project and "st. andrew's cross" not in reference
    assert "st" in reference and "ph" in reference and "ph.d." in project


def test_bigrams_across_lines_switch():
    from collections import Counter

    from metadata.tokenize import tokenizer_of

    def bigrams(cfg: MetadataConfig) -> Counter:
        uni, bi = Counter(), Counter()
        tokenizer_of("en", cfg).count_into("History\nThe city", uni, bi)
        return bi

    assert ("History", "The") not in bigrams(MetadataConfig())
    assert bigrams(REFERENCE_METADATA)[("History", "The")] == 1


def test_titles_require_article_switch():
    from metadata.selection import ranked_titles

    articles, inlinks, views = ["Berlin", "Hamburg"], {"Berlin": 3}, {"Berlin": 70, "Hamburg": 50, "Kein Artikel": 999}
    assert "Kein Artikel" not in ranked_titles(articles, inlinks, views, False, MetadataConfig())[0]
    assert ranked_titles(articles, inlinks, views, False, REFERENCE_METADATA)[0][0] == "Kein Artikel"


def test_lid_script_check_switch():
    from curation.lid import LanguageIdentifier

    texts = ["一碗面条", "小鸟在树上"]  # plain simplified Chinese that lid.176 calls ja
    langs = {cfg.lid_script_check: [lang for _l, _p, lang in LanguageIdentifier(script_check=cfg.lid_script_check)
                                    .predict(texts)]
             for cfg in (CurateConfig(), REFERENCE_CURATE)}
    assert langs == {True: ["zh", "zh"], False: ["ja", "ja"]}


def test_count_identical_texts_switch(tmp_path):
    """The real per-input and bucket steps: one image carries the same alt-text three times."""
    from curation import annotate, grouping
    from curation.samples.alt_texts import write_sample_metadata

    metadata = tmp_path / "metadata"
    write_sample_metadata(metadata, languages=["en"])
    entry = pq.read_table(metadata / "entries" / "en.parquet").column("entry")[20].as_py()
    urls = ["http://img.test/a.jpg"] * 3 + ["http://img.test/b.jpg"]
    texts = [f"a photo of the {entry} on a table"] * 3 + [f"the {entry} at night in the city"]
    pq.write_table(pa.table({"URL": urls, "TEXT": texts}), tmp_path / "in.parquet")
    res = annotate.worker_resources(str(metadata), None)
    grouping.process_input(str(tmp_path / "in.parquet"), "in", "parquet", str(tmp_path / "state"), res)
    state = grouping.input_state_dir(str(tmp_path / "state"), "in")
    run = str(tmp_path / "run.arrow")
    grouping.exchange_run([f"{state}/{grouping.TEXTS_FILE}"], 1, run)

    def count(cfg: CurateConfig) -> int:
        out = tmp_path / cfg.count_identical_texts
        result = grouping.group_bucket(0, 1, [run], str(out), count_identical_texts=cfg.count_identical_texts)
        counts = grouping.counts_table(result).to_pydict()
        entry_id = pq.read_table(metadata / "entries" / "en.parquet").column("entry_id")[20].as_py()
        rows = [c for lang, e, c in zip(counts["lang"], counts["entry_id"], counts["count"], strict=True)
                if lang == "en" and e == entry_id]
        return int(np.sum(rows))

    assert count(CurateConfig()) == 2  # image a's three identical records count once, b's once
    assert count(REFERENCE_CURATE) == 4  # every record, as the reference counts


def test_metadata_written_with_the_reference_padding_records_it(tmp_path):
    from curation.metadata_dir import MetadataDir, write_language, write_manifest

    entries, sources = ["U.S.", "カメラ", "cat"], ["wordnet"] * 3
    infos = {"project": write_language(tmp_path / "p", "en", entries, sources),
             "reference": write_language(tmp_path / "r", "en", entries, sources,
                                         padding=REFERENCE_METADATA.entry_padding)}
    assert "entry_padding" not in infos["project"] and infos["reference"]["entry_padding"] == "reference"
    assert infos["project"]["automaton_content_sha256"] != infos["reference"]["automaton_content_sha256"]
    write_manifest(tmp_path / "r", "v1", {"en": infos["reference"]}, {})
    automaton = MetadataDir(tmp_path / "r").automaton("en")
    assert match_ids(automaton, "the U.S. army and a cat").tolist() == [2]
