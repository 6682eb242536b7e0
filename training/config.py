"""Settings of a training run: the model, data, optim, run and tokenizer sections of one config.

A training/configs/*.json file names a model size and the schedule that goes with it, so the
config is sectioned like those files rather than one flat dataclass. Each section but the model
is a flat dataclass, so curation.config_cli derives its flags, JSON type checks and --help lines
exactly as for the curate, download and metadata jobs: the defaults, then `--config FILE`, then
`--set [SECTION.]KEY=VALUE`, then the named flags (later wins). Field names are unique across
sections (checked below), so every field has one flag (`--lr`, `--workers`, `--no-eval`) and a bare
`--set` key is unambiguous. The model section (nested vision/text towers) comes from the file
only: a model size is chosen by file, not assembled from flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field

from curation import config_cli
from curation.config_cli import ConfigMixin, option
from training.model import ModelConfig

MODES = ("online", "offline")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class DataConfig(ConfigMixin):
    SECTION = "data"

    shards: str | None = option(None, metavar="DIR_OR_GLOB",
                                help="images/ directory or glob (overrides --data for images); none: the sample shards")
    root: str | None = option(None, flags=("--data",), metavar="ROOT",
                              help="a root with images/, entry_probs/, curated/, heldout/ (the other flags override parts)")
    mode: str = option("online", help=f"one of {', '.join(MODES)}: curate online each epoch, or read curated/")
    entry_probs: str | None = option(None, metavar="DIR", help="entry_probs/ of the curate job (online mode)")
    curated: str | None = option(None, metavar="DIR", help="curated/ of the curate job (offline mode)")
    heldout: str | None = option(None, metavar="DIR", help="held-out image shards for retrieval evaluation")
    shuffle_buffer: int = option(2000, help="items per DataLoader worker's shuffle buffer")
    workers: int = option(2, help="DataLoader workers per rank")
    crop_scale: tuple[float, ...] = option((0.9, 1.0), help="random resized crop area range")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"data.mode must be one of {MODES}, got {self.mode!r}")


@dataclass
class OptimConfig(ConfigMixin):
    SECTION = "optim"

    steps: int = option(10000, help="optimiser steps of the whole run")
    batch_size: int = option(256, help="per rank")
    lr: float = option(5e-4, help="peak learning rate")
    min_lr_ratio: float = option(0.0, help="final lr / peak lr of the cosine decay")
    warmup_steps: int = option(2000, help="linear warmup from 0")
    weight_decay: float = option(0.2, help="AdamW decay of every parameter with >= 2 dims (never of gains, "
                                           "biases or the temperature)")
    # MetaCLIP's training decays the token and positional embeddings with the weight matrices
    decay_embeddings: bool = option(True, help="decay the token and positional embedding tables too (MetaCLIP); "
                                               "--no-decay-embeddings exempts them")
    betas: tuple[float, ...] = option((0.9, 0.98), help="AdamW betas")
    eps: float = option(1e-6, help="AdamW eps")
    grad_clip: float = option(1.0, help="max gradient norm (<= 0: off)")


@dataclass
class RunConfig(ConfigMixin):
    SECTION = "run"

    seed: int = option(0, help="model init, data order and curation draws")
    precision: str = option("auto", help=f"one of {', '.join(PRECISIONS)}; auto: bf16 autocast on CUDA, fp32 on CPU")
    grad_checkpointing: bool = option(False, help="recompute activations in backward (memory for compute)")
    local_loss: bool = option(True, help="b x W*b logits per rank; --no-local-loss: the full W*b x W*b matrix")
    checkpoint_every: int = option(1000, help="steps between checkpoints")
    keep_checkpoints: int = option(3, help="newest checkpoints kept")
    log_every: int = option(10, help="steps between metrics.jsonl records")
    threads: int | None = option(None, help="torch intra-op threads on CPU (none: torch's default)")
    evaluate: bool = option(True, aliases=("--eval",), help="evaluate on the held-out shards when finished")

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"run.precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass
class TokenizerConfig(ConfigMixin):
    SECTION = "tokenizer"

    path: str | None = option(None, flags=("--tokenizer",), metavar="FILE",
                              help="a tokenizer.json to load; none: train a BPE on the training texts")
    vocab_size: int = option(2000, flags=("--tokenizer-vocab-size",), help="vocabulary of a trained tokenizer")


SECTIONS: dict[str, type] = {c.SECTION: c for c in (DataConfig, OptimConfig, RunConfig, TokenizerConfig)}
# a config file's own notes, not settings
NOTE_KEYS = ("name", "description")

_owner = {f.name: s for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
if len(_owner) != sum(len(dataclasses.fields(c)) for c in SECTIONS.values()):
    raise AssertionError("training config field names must be unique across sections (one flag each)")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Unknown sections or keys and values of the wrong type are errors, naming the section."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)} - set(NOTE_KEYS)
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)}")
        parts = {name: klass.from_dict(d.get(name, {})) for name, klass in SECTIONS.items()}
        return cls(model=ModelConfig.from_dict(d.get("model", {})), **parts)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> TrainConfig:
        """A training/configs/*.json file (local or s3://; `_` keys are notes); errors name the file."""
        try:
            return cls.from_dict(config_cli.read_config_json(path))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), **{name: getattr(self, name).to_dict() for name in SECTIONS}}


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE`, `--set [SECTION.]KEY=VALUE` and one flag per field of every section."""
    parser.add_argument("--config", metavar="FILE",
                        help="JSON config (training/configs/*.json) with model, data, optim, run and tokenizer "
                             "sections; --set and the flags below override it")
    parser.add_argument("--set", action="append", default=None, metavar="[SECTION.]KEY=VALUE",
                        help="override any data/optim/run/tokenizer field (repeatable), e.g. --set optim.eps=1e-8")
    for name, klass in SECTIONS.items():
        config_cli.add_config_arguments(parser, klass, config_flag=None, set_flag=None, title=f"{name} config")


def _sets_by_section(items: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().rpartition(".")
        section = section if dot else _owner.get(name.replace("-", "_"))
        if not sep or section not in SECTIONS:
            raise ValueError(f"--set expects [SECTION.]KEY=VALUE with SECTION one of {sorted(SECTIONS)} "
                             f"and KEY one of its fields; got {item!r}")
        out.setdefault(section, []).append(f"{name}={value}")
    return out


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config the command line asks for (see the module docstring); ValueError when it is invalid."""
    cfg = TrainConfig.from_json(args.config) if getattr(args, "config", None) else TrainConfig()
    sets = _sets_by_section(getattr(args, "set", None))
    for name, klass in SECTIONS.items():
        section_args = argparse.Namespace(**{**vars(args), "set": sets.get(name)})
        setattr(cfg, name, config_cli.config_from_args(klass, section_args, base=getattr(cfg, name)))
    return cfg
