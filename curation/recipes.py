"""Named presets of config values, one table for every job: `--recipe NAME`.

The defaults of each job's config are the project's recipe (the paper, with the fixes listed in
curation/REFERENCE_DIFFERENCES.md). `--recipe reference` sets, in every job at once, each
setting that switches a documented difference back to what Meta's reference code does, so a
run can be compared with the reference's outputs. A recipe sits between the defaults and the
config file: defaults, then the recipe, then `--config FILE`, then `--set`, then the flags.

Keys are config sections (the `SECTION` of a job's config class); a job whose section is absent
has no deliberate difference for the recipe to switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # the defaults themselves, for scripts that always pass --recipe
    "project": {},
    # every row of REFERENCE_DIFFERENCES.md that has a setting
    "reference": {
        "metadata": {
            "wordnet_cut_name_at_dot": True,  # NLTK name cut at the first "."
            "bigrams_across_lines": True,  # one token stream per extracted file
            "titles_require_article": False,  # every pageview title is a candidate
            "entry_padding": "reference",  # get_spaced_metadata: entry as is, its end classes
        },
        "curate": {
            "count_identical_texts": "every",  # every text record of an image counts
            "lid_script_check": False,  # the model's top label as it is
        },
    },
}


def names() -> list[str]:
    return sorted(RECIPES)


def values(recipe: str | None, section: str | None) -> dict[str, Any]:
    """The field values `recipe` sets in a config `section` ({} for none); ValueError on an unknown name."""
    if recipe is None:
        return {}
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(names())}")
    return dict(RECIPES[recipe].get(section or "", {}))


def sections(recipe: str) -> Mapping[str, dict[str, Any]]:
    return RECIPES[recipe]
