"""Read a YAML file safely, keeping the line and column of every key and value.

Users edit these files by hand, so every problem must point at ``file:line:column``. PyYAML's
safe loader drops positions once it builds Python objects; this loader keeps them on the
mappings and lists it returns. It never constructs arbitrary objects (SafeLoader only).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from newsletter.errors import Problem

Mark = tuple[int, int]


class LocDict(dict):
    """A mapping that remembers where each key and value stood (1-based line, column)."""

    mark: Mark = (1, 1)

    def __init__(self) -> None:
        super().__init__()
        self.key_marks: dict[Any, Mark] = {}
        self.value_marks: dict[Any, Mark] = {}
        self.block_scalar: set[Any] = set()

    def key_at(self, key: Any) -> Mark:
        """Where ``key`` is written, or the mapping's own position if it is absent."""
        return self.key_marks.get(key, self.mark)

    def value_at(self, key: Any) -> Mark:
        """Where ``key``'s value is written, or the mapping's own position if it is absent."""
        return self.value_marks.get(key, self.mark)


class LocList(list):
    """A list that remembers where each item stood."""

    mark: Mark = (1, 1)

    def __init__(self) -> None:
        super().__init__()
        self.item_marks: list[Mark] = []

    def item_at(self, index: int) -> Mark:
        return self.item_marks[index] if index < len(self.item_marks) else self.mark


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Loader(yaml.SafeLoader):
    """SafeLoader that records positions and collects duplicate keys instead of hiding them."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[Any, Mark]] = []


def _construct_map(loader: _Loader, node: yaml.MappingNode):  # type: ignore[no-untyped-def]
    data = LocDict()
    data.mark = _mark(node)
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain word, not a list or mapping",
                key_node.start_mark) from None
        if key in data:
            loader.duplicates.append((key, _mark(key_node)))
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_marks[key] = _mark(key_node)
        data.value_marks[key] = _mark(value_node)
        if isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">"):
            data.block_scalar.add(key)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode):  # type: ignore[no-untyped-def]
    data = LocList()
    data.mark = _mark(node)
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.item_marks.append(_mark(child))


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    # An impossible date such as 2026-02-30 would raise a bare ValueError inside PyYAML;
    # keep it as text so validation reports it with its position.
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def read_yaml(path: Path, display: str | None = None) -> tuple[Any, list[Problem]]:
    """Load ``path`` safely. Returns (data, problems); data is None when unreadable."""
    name = display or str(path)
    hint_open = "check the path; issues live in the issues/ folder, e.g. issues/2026-spring.yaml"
    if not path.exists():
        return None, [Problem(name, 1, 1, "file not found", hint_open)]
    if path.is_dir():
        return None, [Problem(name, 1, 1, "this is a folder, not a YAML file", hint_open)]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(name, 1, 1, f"cannot read the file: {exc.strerror}",
                              "check the file's permissions")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(name, line, column, "the file is not UTF-8 text",
                              "save the file as UTF-8 in your editor (File > Save with Encoding)")]
    if not text.strip():
        return None, [Problem(name, 1, 1, "the file is empty",
                              "start from a skeleton: newsletter new")]
    loader = None
    try:
        loader = _Loader(text)
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (exc.problem or "invalid YAML").strip()
        return None, [Problem(name, line, column, f"YAML syntax error: {what}",
                              "check indentation (spaces, not tabs) and that text containing "
                              "': ' or starting with a special character is in quotes")]
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return None, [Problem(name, line, column,
                              f"the file contains a control character (code {exc.character:#x})",
                              "delete the invisible character, or retype the line")]
    except yaml.YAMLError as exc:
        return None, [Problem(name, 1, 1, f"YAML syntax error: {exc}",
                              "the file must hold a single YAML document")]
    finally:
        if loader is not None:
            loader.dispose()
    problems = [Problem(name, line, column, f"key '{key}' appears twice",
                        "remove one of them: the later one would silently win")
                for key, (line, column) in loader.duplicates]
    return data, problems


def is_date(value: Any) -> bool:
    """True for a real calendar date (not a datetime, not text)."""
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
