"""YAML files → typed dataclasses, with dotted command-line overrides (`optim.lr=1e-6`).

Every error names where the value came from (the file or "command line"), the dotted key, and the
expected type, and is raised before any work starts.
"""
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from oreal_mega.errors import UserError


class ConfigError(UserError):
    pass


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, key: str, source: str):
    """Check `value` against the annotation `tp` and build nested dataclasses."""
    def fail():
        raise ConfigError(f"{source}: key '{key}' expects {_type_name(tp)}, "
                          f"got {type(value).__name__} {value!r}")

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail()
        return _build(tp, value, key, source)
    if origin is Literal:
        if value not in typing.get_args(tp):
            fail()
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key, source)
            except ConfigError:
                continue
        fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length, typed by position
            if len(value) != len(args):
                fail()
            return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        items = [_convert(v, args[0] if args else Any, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        _, item = typing.get_args(tp)
        return {k: _convert(v, item, f"{key}.{k}", source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is type(None):
        if value is not None:
            fail()
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            fail()
    if tp is Path and isinstance(value, str):
        return Path(value)
    if tp in (int, float) and isinstance(value, bool):
        fail()
    if not isinstance(value, tp):
        fail()
    return value


def _removed(cls) -> dict[str, str]:
    """Keys a config class no longer has, each with what to do instead (`REMOVED_KEYS`)."""
    return getattr(cls, "REMOVED_KEYS", {})


def _build(cls, data: dict, prefix: str, source: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        where = f"{prefix}.{key}" if prefix else key
        if key in _removed(cls):
            raise ConfigError(f"{source}: key '{where}' was removed: {_removed(cls)[key]}")
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{where}' ({cls.__name__} has: "
                              f"{', '.join(fields)})")
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing required key '{key}' ({_type_name(hints[name])})")
    return cls(**kwargs)


def _apply_override(data: dict, cls, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"command line: override {override!r} is not of the form key.path=value")
    dotted, raw = override.split("=", 1)
    value = yaml.safe_load(raw) if raw else ""
    parts = dotted.split(".")
    node, node_cls = data, cls
    for depth, part in enumerate(parts):
        fields = {f.name for f in dataclasses.fields(node_cls)} if dataclasses.is_dataclass(node_cls) else None
        if fields is not None and part in _removed(node_cls):
            raise ConfigError(f"command line: key '{'.'.join(parts[:depth + 1])}' was removed: "
                              f"{_removed(node_cls)[part]}")
        if fields is not None and part not in fields:
            raise ConfigError(f"command line: unknown key '{'.'.join(parts[:depth + 1])}' "
                              f"({node_cls.__name__} has: {', '.join(sorted(fields))})")
        if depth == len(parts) - 1:
            node[part] = value
            return
        hint = typing.get_type_hints(node_cls)[part] if fields is not None else Any
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"command line: '{'.'.join(parts[:depth + 1])}' is not a section")
        node, node_cls = child, _dataclass_in(hint)


def _dataclass_in(hint):
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def source_name(path: str | Path | None, overrides: list[str] = ()) -> str:
    """Where a loaded config's values came from, as errors name it."""
    source = "defaults" if path is None else str(path)
    return f"{source} + command line" if overrides else source


def load_config(cls, path: str | Path | None = None, overrides: list[str] = ()):
    """Read `path` (YAML) into dataclass `cls`, then apply `key.path=value` overrides."""
    data: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        source = str(path)
    cfg = _build(cls, data, "", source)  # report file errors against the file before overrides apply
    if not overrides:
        return cfg
    for item in overrides:
        _apply_override(data, cls, item)
    return _build(cls, data, "", source_name(path, overrides))


def to_dict(cfg) -> dict:
    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def save_resolved(cfg, run_dir: str | Path) -> Path:
    """Write the fully resolved config next to the run's outputs."""
    path = Path(run_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path
