"""Bounded YAML reading for files a user hands to autorad (experiment configs, PyRadiomics parameter files,
``--set`` values).

PyYAML's ``safe_load`` builds no arbitrary objects, but it accepts any size, any number of aliases (a
"billion laughs" file of a few hundred bytes expands to gigabytes once something walks or prints it) and
silently keeps the last of duplicate keys. Here a file is refused, with a :class:`~autorad.core.errors.ConfigError`
of one short line, when it is larger than :data:`MAX_BYTES`, uses more than :data:`MAX_ALIASES` aliases,
would expand to more than :data:`MAX_NODES` values, nests deeper than the interpreter allows, or repeats a key
in one mapping. Checks run on the composed node graph (aliases are shared there, so checking costs
time and memory in the size of the file, not of its expansion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from autorad.core.errors import ConfigError

MAX_BYTES = 1 << 20  # 1 MiB: a config is a few hundred bytes
MAX_ALIASES = 100
MAX_NODES = 100_000
EXCERPT = 60  # characters of user text quoted in an error


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """``repr(value)`` cut to ``limit`` characters (error messages quote user input, never all of it)."""
    text = repr(value) if not isinstance(value, (list, dict, tuple, set)) else _short_repr(value, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_repr(value: Any, limit: int) -> str:
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxstring, r.maxother = 2, 4, 4, limit, limit
    return r.repr(value)


class _LimitError(Exception):
    """A bound of this module was exceeded (turned into a ConfigError with the file name)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _LimitError(f"more than {MAX_ALIASES} YAML aliases (*name)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise _LimitError(f"duplicate key {excerpt(key_node.value)} (line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds once every alias is expanded (memoised on shared nodes)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if isinstance(node, yaml.ScalarNode):
            n = 1
        elif isinstance(node, yaml.SequenceNode):
            n = 1 + sum(size(c) for c in node.value)
        else:
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        n = min(n, MAX_NODES + 1)
        sizes[key] = n
        return n

    return size(root)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse YAML ``text`` within the bounds above; ``source`` names it in errors (a path or ``--set X``)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES // 1024} KiB; a config is a short YAML file")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise _LimitError(f"expands to more than {MAX_NODES} values (nested YAML aliases?)")
        return loader.construct_document(node)
    except _LimitError as err:
        raise ConfigError(f"{source}: refused: {err}") from None
    except RecursionError:
        raise ConfigError(f"{source}: refused: nested too deeply") from None
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise ConfigError(f"{source}: not valid YAML ({first[:160]})") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse a user's YAML file within the bounds above (size checked before reading)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{p}: larger than {MAX_BYTES // 1024} KiB; a config is a short YAML file")
        with open(p, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not valid YAML (not UTF-8 text)") from None
    return load_yaml_text(text, str(p))
