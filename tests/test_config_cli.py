"""curation.config_cli: flags, JSON files and overrides derived from a config dataclass."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest

from curation import config_cli
from curation.config_cli import option


@dataclass(frozen=True)
class DemoConfig:
    size: int = option(256, help="shorter side in pixels")
    ratio: float = 0.5
    strict: bool = False
    name: str = "demo"
    model: str | None = None
    langs: tuple[str, ...] = ("en", "ja")
    ids: tuple[int, ...] = ()
    table: list = option(default_factory=list)
    conf: dict = option(default_factory=dict, flags=("--conf",), repeat=True, help="extra settings")
    inputs: tuple[str, ...] = option((), flags=("--input", "-i"), repeat=True)
    threads: int = option(4, aliases=("--per-host",))
    hidden: int = option(1, cli=False)

    def __post_init__(self):
        if self.size < 1:
            raise ValueError("size must be >= 1")


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo")
    p.add_argument("--output")
    config_cli.add_config_arguments(p, DemoConfig, **kw)
    return p


def _cfg(argv, section=None, **kw) -> DemoConfig:
    return config_cli.config_from_args(DemoConfig, _parser(section=section, **kw).parse_args(argv), section=section)


def test_no_flags_gives_the_defaults():
    assert _cfg([]) == DemoConfig()


def test_every_type_is_coerced_from_flags():
    cfg = _cfg(["--size", "64", "--ratio", "0.25", "--strict", "--name", "x", "--model", "m.bin",
                "--langs", "zh,th", "--ids", "[3, 1]", "--table", '["a", 2]', "--conf", "a=1", "--conf", "b=x=y",
                "-i", "p1", "--input", "p2", "--per-host", "9"])
    assert cfg == DemoConfig(size=64, ratio=0.25, strict=True, name="x", model="m.bin", langs=("zh", "th"),
                             ids=(3, 1), table=["a", 2], conf={"a": "1", "b": "x=y"}, inputs=("p1", "p2"), threads=9)
    assert isinstance(cfg.langs, tuple) and isinstance(cfg.ratio, float)
    assert _cfg(["--no-strict", "--model", "none"]).model is None


def test_set_overrides_any_field_and_flags_win(tmp_path):
    cfg = _cfg(["--set", "strict=yes", "--set", "hidden=5", "--set", "size=10", "--size", "20",
                "--set", "conf={\"k\": 1}", "--set", "ids=4,5"])
    assert (cfg.strict, cfg.hidden, cfg.size, cfg.conf, cfg.ids) == (True, 5, 20, {"k": 1}, (4, 5))
    with pytest.raises(ValueError, match="KEY one of"):
        _cfg(["--set", "nope=1"])
    with pytest.raises(ValueError, match="KEY one of"):
        _cfg(["--set", "size"])
    with pytest.raises(ValueError, match="not a boolean"):
        _cfg(["--set", "strict=maybe"])


def test_bad_flag_values_are_argparse_errors(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--size", "big"])
    assert "size: cannot read 'big' as int" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["--conf", "novalue"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_hidden_field_has_no_flag_and_help_shows_texts_and_defaults(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--hidden", "3"])
    capsys.readouterr()
    help_text = _parser().format_help()
    assert "shorter side in pixels (default: 256)" in help_text
    assert "--strict, --no-strict" in help_text and "--per-host" in help_text and "-i" in help_text
    assert 'default: ["en", "ja"]' in help_text


def test_json_file_then_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"_comment": "ignored", "demo": {"size": 32, "ratio": 1, "langs": ["de"],
                                                                "conf": {"a": "file"}, "model": None}}))
    cfg = _cfg(["--config", str(path), "--ratio", "0.75", "--conf", "b=flag"], section="demo")
    assert (cfg.size, cfg.ratio, cfg.langs, cfg.conf) == (32, 0.75, ("de",), {"a": "file", "b": "flag"})
    loaded = config_cli.load_json(DemoConfig, path, section="demo")
    assert loaded.ratio == 1.0 and isinstance(loaded.ratio, float) and loaded.langs == ("de",)


@pytest.mark.parametrize("doc, match", [
    ({"sizes": 3}, "unknown demo config keys"),
    ({"size": "3"}, "expected int"),
    ({"size": True}, "expected int"),
    ({"strict": 1}, "expected bool"),
    ({"name": None}, "null is not allowed"),
    ({"conf": [1]}, "expected object"),
    ({"size": 0}, "size must be >= 1"),
])
def test_bad_json_configs_are_clear_errors(tmp_path, doc, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match) as e:
        config_cli.load_json(DemoConfig, path)
    assert str(path) in str(e.value)


def test_non_object_and_invalid_json_files(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="JSON object"):
        config_cli.load_json(DemoConfig, tmp_path / "list.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        config_cli.load_json(DemoConfig, tmp_path / "broken.json")
    with pytest.raises(OSError):
        config_cli.load_json(DemoConfig, tmp_path / "missing.json")


def test_round_trip_through_json_dict():
    cfg = DemoConfig(langs=("a", "b"), conf={"x": "1"}, model="m")
    doc = json.loads(json.dumps(config_cli.to_dict(cfg)))
    assert doc["langs"] == ["a", "b"]
    assert config_cli.from_dict(DemoConfig, doc) == cfg


def test_exclude_and_extra_aliases():
    p = _parser(exclude=("inputs",), aliases={"ratio": ("-r",)}, set_flag=None)
    args = p.parse_args(["-r", "0.1"])
    assert not hasattr(args, "inputs") and not hasattr(args, "set")
    assert config_cli.config_from_args(DemoConfig, args).ratio == 0.1


def test_unsupported_field_type_is_reported():
    @dataclass
    class Odd:
        when: complex = 1j

    with pytest.raises(TypeError, match="unsupported type"):
        config_cli.add_config_arguments(argparse.ArgumentParser(), Odd)


def test_metavar_option_names_the_value_in_help():
    @dataclass(frozen=True)
    class Paths:
        out: str = option("", metavar="DIR", help="where to write")
        src: tuple[str, ...] = option((), flags=("--src",), repeat=True, metavar="PATH")
        n: int = 1

    p = argparse.ArgumentParser()
    config_cli.add_config_arguments(p, Paths)
    text = p.format_help()
    assert "--out DIR" in text and "--src PATH" in text and "--n INT" in text
    args = p.parse_args(["--out", "o", "--src", "a", "--src", "b"])
    assert config_cli.config_from_args(Paths, args) == Paths(out="o", src=("a", "b"))


def test_list_items_are_type_checked_in_json():
    assert config_cli.from_dict(DemoConfig, {"ids": [1, 2], "langs": "de"}) == DemoConfig(ids=(1, 2), langs=("de",))
    with pytest.raises(ValueError, match="expected list of int"):
        config_cli.from_dict(DemoConfig, {"ids": [1, "2"]})
    with pytest.raises(ValueError, match="expected list of str"):
        config_cli.from_dict(DemoConfig, {"langs": ["en", None]})
    assert config_cli.from_dict(DemoConfig, {"table": [1, "x"]}).table == [1, "x"]  # untyped list: as is


def test_none_flag_overrides_a_value_from_the_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "file.bin"}))
    assert _cfg(["--config", str(path)]).model == "file.bin"
    assert _cfg(["--config", str(path), "--model", "null"]).model is None
    assert _cfg(["--config", str(path), "--set", "model=none"]).model is None
