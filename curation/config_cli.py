"""Config dataclasses <-> command line and JSON files: one implementation for every job.

A job config is a frozen dataclass whose defaults reproduce the paper. A run is described by
the defaults, then a JSON file (`--config`), then `--set KEY=VALUE` overrides, then the named
flags, in that order (later wins). This module derives all of that from the dataclass itself,
so a new field gets its flag, its JSON key, its type check and its `--help` line for free and
the jobs cannot drift apart.

Per-field options live in the field's metadata (see `option`):
    help     the --help text (the default value is appended)
    flags    flag strings replacing the derived `--field-name` (e.g. ("--input", "-i"))
    aliases  extra flag strings kept for compatibility (e.g. ("--per-host",))
    repeat   tuple/list/dict fields: the flag may be repeated, each use adds one item
             (dict items as KEY=VALUE, merged over the file's dict)
    cli      False: no flag (still settable from the JSON file and --set)
    metavar  the value's name in --help (default: derived from the type, e.g. INT)

Types understood (after resolving `from __future__` annotations): int, float, bool, str,
tuple[...] / list[...] (items coerced to the element type), dict, and `X | None` of those.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null")
SIMPLE = (bool, int, float, str)


def option(default: Any = dataclasses.MISSING, *, help: str | None = None,
           default_factory: Any = dataclasses.MISSING, flags: Iterable[str] | None = None,
           aliases: Iterable[str] = (), repeat: bool = False, cli: bool = True,
           metavar: str | None = None) -> Any:
    """`dataclasses.field` with the command-line options of this module in its metadata."""
    meta: dict[str, Any] = {"help": help, "aliases": tuple(aliases), "repeat": repeat, "cli": cli}
    if metavar is not None:
        meta["metavar"] = metavar
    if flags is not None:
        meta["flags"] = tuple(flags)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


# --- types -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldType:
    """What a field holds: `base` in int/float/bool/str/tuple/list/dict, `item` for sequences."""

    base: type
    optional: bool = False
    item: type | None = None  # element type of tuple[X, ...] / list[X]; None = keep as is


def _field_types(cls) -> dict[str, FieldType]:
    hints = typing.get_type_hints(cls)
    return {f.name: _describe(hints.get(f.name, f.type), f.name) for f in dataclasses.fields(cls)}


def _describe(tp, name: str) -> FieldType:
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"config field {name}: unsupported union type {tp}")
        tp = args[0]
        origin = typing.get_origin(tp)
    base = origin or tp
    if base in SIMPLE or base is dict:
        return FieldType(base, optional)
    if base in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args and args[0] in SIMPLE else None
        return FieldType(base, optional, item)
    if base is typing.Any:
        return FieldType(str, optional)
    raise TypeError(f"config field {name}: unsupported type {tp}")


def parse_value(ft: FieldType, text: str, name: str = "value"):
    """A command-line string as a value of the field's type.

    bool: 1/0, true/false, yes/no, on/off. tuple/list: a JSON list or comma-separated items.
    dict: a JSON object or comma-separated KEY=VALUE pairs. `none`/`null` for optional fields.
    """
    s = text.strip()
    if ft.optional and s.lower() in _NONE:
        return None
    try:
        if ft.base is bool:
            return _parse_bool(s)
        if ft.base in (int, float):
            return ft.base(s)
        if ft.base is str:
            return text
        if ft.base in (tuple, list):
            items = json.loads(s) if s.startswith("[") else [x.strip() for x in s.split(",") if x.strip()]
            if not isinstance(items, list):
                raise ValueError("expected a JSON list or comma-separated items")
            if ft.item is not None:
                items = [x if not isinstance(x, str) else parse_value(FieldType(ft.item), x) for x in items]
            return ft.base(items)
        if ft.base is dict:
            if s.startswith("{"):
                d = json.loads(s)
                if not isinstance(d, dict):
                    raise ValueError("expected a JSON object")
                return d
            return dict(_parse_pair(x) for x in s.split(",") if x.strip())
    except (ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"{name}: cannot read {text!r} as {type_name(ft)}: {e}") from None
    raise ValueError(f"{name}: unsupported type {ft}")


def _parse_bool(s: str) -> bool:
    low = s.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"not a boolean (use one of {'/'.join(_TRUE + _FALSE)})")


def _parse_pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {item!r}")
    return key.strip(), value.strip()


def json_value(ft: FieldType, value, name: str):
    """A value read from a JSON file, checked (and converted: list -> tuple, int -> float)."""
    if value is None:
        if ft.optional:
            return None
        raise ValueError(f"config key {name}: null is not allowed (a {type_name(ft)})")
    if ft.base is bool:
        ok = isinstance(value, bool)
    elif ft.base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif ft.base is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif ft.base is str:
        ok = isinstance(value, str)
    elif ft.base in (tuple, list):
        if isinstance(value, str):  # one item given without brackets
            value = [value]
        ok = isinstance(value, list | tuple)
        if ok and ft.item is not None:  # items of tuple[str, ...] etc. are checked like fields
            try:
                value = [json_value(FieldType(ft.item), x, name) for x in value]
            except ValueError:
                ok = False
        value = ft.base(value) if ok else value
    else:
        ok = isinstance(value, dict)
    if not ok:
        raise ValueError(f"config key {name}: expected {type_name(ft)}, got {json.dumps(value)}")
    return value


def type_name(ft: FieldType) -> str:
    name = {tuple: "list", list: "list", dict: "object"}.get(ft.base, ft.base.__name__)
    if ft.item is not None:
        name += f" of {ft.item.__name__}"
    return name + (" or null" if ft.optional else "")


# --- JSON ----------------------------------------------------------------------------------------


def from_dict(cls, data: Mapping[str, Any], what: str | None = None):
    """An instance of `cls` from a dict of field values; unknown keys and wrong types are errors.

    A typo in a config must not silently fall back to a default.
    """
    what = what or _label(cls)
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ValueError(f"unknown {what} config keys: {unknown}; known keys: {sorted(types_)}")
    return cls(**{k: json_value(types_[k], v, k) for k, v in data.items()})


def read_config_json(path: str | os.PathLike, section: str | None = None) -> dict:
    """The field dict of a JSON config file: the object itself, or its `section` key when present.

    Keys starting with `_` (e.g. "_comment") are notes for people and are dropped.
    """
    from curation import storage

    try:
        data = json.loads(storage.read_bytes(os.fspath(path)))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file is a JSON object")
    if section is not None and isinstance(data.get(section), dict):
        data = data[section]
    return {k: v for k, v in data.items() if not k.startswith("_")}


def load_json(cls, path: str | os.PathLike, section: str | None = None, what: str | None = None):
    """`cls` from a JSON config file (see read_config_json); errors name the file."""
    try:
        return from_dict(cls, read_config_json(path, section), what)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None


def to_dict(config) -> dict:
    """JSON-ready field values (tuples as lists), e.g. for a run manifest."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _label(cls) -> str:
    name = cls.__name__
    return name[: -len("Config")].lower() if name.endswith("Config") and name != "Config" else name


# --- argparse -----------------------------------------------------------------------------------


class _ExplicitNone:
    """A flag given as `none`/`null`: unlike argparse's default None it overrides the file's value."""

    def __repr__(self) -> str:
        return "None"


EXPLICIT_NONE = _ExplicitNone()


class _Converter:
    """argparse `type=` for one field (argparse prints the message of ArgumentTypeError)."""

    def __init__(self, ft: FieldType, name: str):
        self.ft, self.name, self.__name__ = ft, name, type_name(ft)

    def __call__(self, text: str):
        try:
            value = parse_value(self.ft, text, self.name)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return EXPLICIT_NONE if value is None else value


def flags_of(field: dataclasses.Field) -> tuple[str, ...]:
    meta = field.metadata
    flags = tuple(meta.get("flags") or ("--" + field.name.replace("_", "-"),))
    return flags + tuple(meta.get("aliases") or ())


def add_config_arguments(parser: argparse.ArgumentParser, cls, *, exclude: Iterable[str] = (),
                         aliases: Mapping[str, Iterable[str]] | None = None, config_flag: str | None = "--config",
                         section: str | None = None, set_flag: str | None = "--set",
                         title: str | None = None, recipe_flag: str | None = "--recipe") -> argparse._ArgumentGroup:
    """Add a flag per field of `cls` (`--field-name`, default None = not given) to `parser`.

    Also `--config FILE` (JSON with the fields, optionally under `section`), `--set KEY=VALUE`
    (any field, repeatable) and, with a config flag, `--recipe NAME` (curation.recipes), unless
    those are None. Bool fields get `--x/--no-x`. `aliases` adds flag strings per field name
    (besides those in the field metadata).
    """
    from curation import recipes

    what = _label(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} fields",
                                      "defaults, then --recipe, then --config, then --set, then these flags "
                                      "(later wins)")
    if config_flag and recipe_flag:
        group.add_argument(recipe_flag, dest="recipe", choices=recipes.names(), default=None,
                           help="a named preset of settings for every job (curation/recipes.py); 'reference': "
                                "Meta's reference code wherever the project deliberately differs")
    if config_flag:
        where = f" (optionally under {section!r})" if section else ""
        group.add_argument(config_flag, dest="config", metavar="FILE",
                           help=f"JSON object with {cls.__name__} fields{where}; flags override it")
    if set_flag:
        group.add_argument(set_flag, dest="set", action="append", default=None, metavar="KEY=VALUE",
                           help=f"override any {what} config field (repeatable), e.g. {set_flag} "
                                f"{dataclasses.fields(cls)[0].name}=...")
    types_ = _field_types(cls)
    skip = set(exclude)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        ft = types_[f.name]
        flags = flags_of(f) + tuple((aliases or {}).get(f.name, ()))
        repeat = bool(f.metadata.get("repeat")) and ft.base in (tuple, list, dict)
        help_text = _help(f, "(repeatable)" if repeat else "")
        if ft.base is bool:
            group.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        elif repeat:
            item = FieldType(ft.item or str) if ft.base is not dict else None
            conv = _Converter(item, f.name) if item else _pair
            group.add_argument(*flags, dest=f.name, action="append", default=None, type=conv,
                               metavar=f.metadata.get("metavar")
                               or ("KEY=VALUE" if ft.base is dict else type_name(item).upper()),
                               help=help_text)
        else:
            group.add_argument(*flags, dest=f.name, type=_Converter(ft, f.name), default=None,
                               metavar=f.metadata.get("metavar") or type_name(ft).split()[0].upper(),
                               help=help_text)
    return group


def _pair(text: str) -> tuple[str, str]:
    try:
        return _parse_pair(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _help(f: dataclasses.Field, note: str = "") -> str | None:
    text = " ".join(x for x in (f.metadata.get("help"), note) if x)
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return text.replace("%", "%%") if text else None
    shown = json.dumps(list(default) if isinstance(default, tuple) else default, ensure_ascii=False)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    full = f"{text} (default: {shown})" if text else f"default: {shown}"
    return full.replace("%", "%%")  # argparse %-formats help strings


def overrides_from_args(cls, args: argparse.Namespace, base=None) -> dict:
    """The field changes requested on the command line: --set items, then named flags (these win)."""
    types_ = _field_types(cls)
    changes: dict[str, Any] = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types_:
            raise ValueError(f"--set expects KEY=VALUE with KEY one of {sorted(types_)}; got {item!r}")
        changes[key] = parse_value(types_[key], value, key)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, ft in types_.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if value is EXPLICIT_NONE:
            changes[name] = None
            continue
        if fields[name].metadata.get("repeat") and ft.base is dict:
            merged = dict(getattr(base, name, None) or {}) if name not in changes else dict(changes[name])
            merged.update(dict(value))
            value = merged
        elif fields[name].metadata.get("repeat") and ft.base in (tuple, list):
            value = ft.base(value)
        changes[name] = value
    return changes


def config_from_args(cls, args: argparse.Namespace, base=None, section: str | None = None):
    """The config a command line asks for: `base` (or the defaults with --recipe's values and
    --config FILE's over them) + overrides.

    Raises ValueError (bad file, unknown --set key, invalid value) for the caller to report.
    """
    if base is None:
        from curation import recipes

        preset = recipes.values(getattr(args, "recipe", None), section or getattr(cls, "SECTION", None))
        path = getattr(args, "config", None)
        data = read_config_json(path, section) if path else {}
        try:  # the recipe's values under the file's: a reviewed file is more specific than a preset
            base = from_dict(cls, {**preset, **data})
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}" if path else str(e)) from None
    changes = overrides_from_args(cls, args, base)
    return dataclasses.replace(base, **changes) if changes else base


class ConfigMixin:
    """The methods every job's config dataclass shares: JSON-ready `to_dict`, strict `from_dict`
    (unknown keys and wrong types are errors), `from_json` (the fields, or under the class's
    SECTION key of a file shared by several jobs) and `replace` (None leaves a field as it is)."""

    SECTION: str | None = None  # not annotated in subclasses: a class attribute, never a field

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        return from_dict(cls, data)

    @classmethod
    def from_json(cls, path: str | os.PathLike):
        return load_json(cls, path, section=cls.SECTION)

    def replace(self, **changes):
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
