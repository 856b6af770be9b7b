"""Frozen dataclass configs with strict construction from plain dicts.

Every component owns its config dataclass and its defaults (one docstring per field, written as a
string literal right under the field).  This module only knows how to build such dataclasses from
nested dicts, apply ``key.sub=value`` overrides, and serialise them back, failing loudly on
unknown keys or wrong types so that a typo in a config never silently falls back to a default.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, Mapping, TypeVar

from hero_bench.errors import ConfigError

T = TypeVar("T")


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a plain (YAML/JSON/CLI) value to ``annotation``, or raise ConfigError naming ``where``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return from_dict(annotation, value, prefix=where + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not accepted; expected {_describe(annotation)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of the accepted values {list(args)}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        return type(value)(value) if origin is list else tuple(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            out = int(value) if not isinstance(value, float) or value.is_integer() else None
        except ValueError:
            out = None
        if out is None:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        # no setting means anything at NaN or infinity; they would only surface as NaN losses later
        if not math.isfinite(out):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return out
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "null"}


def _describe(annotation: Any) -> str:
    """``int | None`` -> "an integer or null": the accepted values in words, for error messages."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    return _KIND_NAMES.get(annotation, str(annotation))


def from_dict(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys raise ConfigError naming them."""
    data = dict(data or {})
    names = _field_names(cls)
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"accepted keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML/JSON."""

    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(obj)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as a Python/YAML literal when possible, else a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        value: Any = lowered == "true"
    elif lowered in ("none", "null"):
        value = None
    else:
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
    return key.split("."), value


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(cls: type[T], obj: T, overrides: list[str]) -> T:
    """Return a new ``cls`` with ``key.sub=value`` overrides applied (strictly validated)."""
    data = to_dict(obj)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            if not isinstance(node.get(part), dict):
                sections = sorted(k for k, v in node.items() if isinstance(v, dict))
                raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a config section; "
                                  f"accepted{' under ' + '.'.join(path[:i]) if i else ''}: {', '.join(sections)}")
            node = node[part]
        if path[-1] not in node:
            where = ".".join(path[:-1])
            raise ConfigError(
                f"override {text!r}: unknown key {'.'.join(path)}; accepted keys"
                f"{' under ' + where if where else ''}: {', '.join(sorted(node))}"
            )
        node[path[-1]] = value
    return from_dict(cls, data)


def config_hash(obj: Any) -> str:
    """Short stable hash of a config (sorted JSON of its dict form)."""
    blob = json.dumps(to_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
