"""Read a YAML file safely, keeping what the editor typed and where they typed it.

Users edit these files by hand, so every problem must point at ``file:line:column``. PyYAML's
safe loader drops positions once it builds Python objects; this loader keeps them on the
mappings and lists it returns. It never constructs arbitrary objects (SafeLoader only).

**Every value is text.** YAML 1.1, which PyYAML follows, guesses types from how a value looks:
``03000410000`` is an octal number, ``14:00`` is 840 (base 60), ``No`` is false, ``1.10`` is
1.1, ``2026-03-17`` is a date. Editors mean none of that. Here a plain (unquoted) value is
always the text exactly as written, and the schema (:mod:`newsletter.fields`) converts the
fields that are dates, numbers or true/false, with a located message when they do not parse.
Only an empty value (``key:`` with nothing after it) and ``~`` mean "nothing" (None).

Plain values are :class:`Plain` strings, so the schema can tell ``null`` typed bare (YAML's
word for nothing, which an editor may not mean either way) from ``"null"`` in quotes.
Explicit tags (``!!int 5``, ``!!binary ...``) are refused: no field needs them.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from newsletter.errors import Problem

Mark = tuple[int, int]

# Deeper than any of our files needs, far below where PyYAML's recursive composer and
# constructor would exhaust Python's stack.
MAX_DEPTH = 40

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
# The tags this loader builds, each with the only kind of node it applies to.
# A "<<" that is not a merge key (merge keys never reach the constructor) is text.
_KINDS = {_STR: yaml.ScalarNode, _NULL: yaml.ScalarNode, _MERGE: yaml.ScalarNode,
          _MAP: yaml.MappingNode, _SEQ: yaml.SequenceNode}


class Plain(str):
    """A value written without quotes; equal to (and used as) the text itself."""

    __slots__ = ()


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
        """Where item ``index`` is written, or the list's own position."""
        return self.item_marks[index] if index < len(self.item_marks) else self.mark


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that these files do not accept, with its own message and hint."""

    def __init__(self, message: str, hint: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=message, problem_mark=mark)
        self.hint = hint


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps text as text, records positions, and collects duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[Any, Mark]] = []
        self.depth = 0

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            if value in ("", "~"):
                return _NULL
            return _MERGE if value == "<<" else _STR
        return super().resolve(kind, value, implicit)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"the file nests more than {MAX_DEPTH} levels deep",
                               "check the indentation and the brackets: no field is nested "
                               "this deeply", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        kind = _KINDS.get(node.tag)
        if kind is None or not isinstance(node, kind):
            tag = node.tag.replace("tag:yaml.org,2002:", "!!", 1)
            raise _Refused(f"the YAML tag '{tag}' is not used in these files",
                           "remove the tag (the word starting with '!'): each field already "
                           "knows whether it is text, a date, a number or true/false",
                           node.start_mark)
        return super().construct_object(node, deep=deep)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[LocDict]:
    data = LocDict()
    data.mark = _mark(node)
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise _Refused("a key must be a plain word, not a list or mapping",
                           "write 'key: value', with the key as a single word",
                           key_node.start_mark) from None
        if key in data:
            loader.duplicates.append((key, _mark(key_node)))
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_marks[key] = _mark(key_node)
        data.value_marks[key] = _mark(value_node)
        if isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">"):
            data.block_scalar.add(key)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[LocList]:
    data = LocList()
    data.mark = _mark(node)
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.item_marks.append(_mark(child))


def _construct_str(loader: _Loader, node: yaml.ScalarNode) -> str:
    value = loader.construct_scalar(node)
    return Plain(value) if node.style is None else value


_Loader.add_constructor(_MAP, _construct_map)
_Loader.add_constructor(_SEQ, _construct_seq)
_Loader.add_constructor(_STR, _construct_str)
_Loader.add_constructor(_MERGE, _construct_str)

_SYNTAX_HINT = ("check indentation (spaces, not tabs) and that text containing ': ' or "
                "starting with a special character is in quotes")


def _position(text: str, offset: int) -> Mark:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse_yaml(text: str, name: str) -> tuple[Any, list[Problem]]:
    """Parse YAML ``text`` (named ``name`` in messages). Returns (data or None, problems)."""
    loader = None
    try:
        loader = _Loader(text)
        data = loader.get_single_data()
    except _Refused as exc:
        mark = exc.problem_mark
        at = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Problem(name, *at, str(exc.problem), exc.hint)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = (exc.problem or "invalid YAML").strip()
        return None, [Problem(name, *at, f"YAML syntax error: {what}", _SYNTAX_HINT)]
    except yaml.reader.ReaderError as exc:
        return None, [Problem(name, *_position(text, exc.position),
                              f"the file contains a control character (code {exc.character:#x})",
                              "delete the invisible character, or retype the line")]
    except yaml.YAMLError as exc:
        return None, [Problem(name, 1, 1, f"YAML syntax error: {exc}",
                              "the file must hold a single YAML document")]
    except RecursionError:
        # Not reached with MAX_DEPTH in place; kept so no input can ever end in a traceback.
        return None, [Problem(name, 1, 1, "the file nests too deeply to read",
                              "check the indentation and the brackets")]
    finally:
        if loader is not None:
            loader.dispose()
    problems = [Problem(name, line, column, f"key '{key}' appears twice",
                        "remove one of them: the later one would silently win")
                for key, (line, column) in loader.duplicates]
    return data, problems


def read_yaml(path: Path, display: str | None = None) -> tuple[Any, list[Problem]]:
    """Load ``path`` safely. Returns (data, problems); data is None when unreadable."""
    name = display or str(path)
    hint_open = "check the path; issues live in the issues/ folder, e.g. issues/2026-spring.yaml"
    try:
        if not path.exists():
            return None, [Problem(name, 1, 1, "file not found", hint_open)]
        if path.is_dir():
            return None, [Problem(name, 1, 1, "this is a folder, not a YAML file", hint_open)]
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(name, 1, 1, f"cannot read the file: {exc.strerror}",
                              "check the file's name and permissions")]
    try:
        # Notepad's "Unicode" is UTF-16 with a byte-order mark: read it rather than refuse.
        utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        text = raw.decode("utf-16" if utf16 else "utf-8-sig")
    except UnicodeDecodeError as exc:
        if utf16:
            return None, [Problem(name, 1, 1, "the file is not valid UTF-16 text",
                                  "save the file as UTF-8 in your editor (File > Save with "
                                  "Encoding)")]
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(name, line, column, "the file is not UTF-8 text",
                              "save the file as UTF-8 in your editor (File > Save with Encoding)")]
    if not text.strip():
        return None, [Problem(name, 1, 1, "the file is empty",
                              "start from a skeleton: newsletter new")]
    return parse_yaml(text, name)
