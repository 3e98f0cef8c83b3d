"""Safe YAML reading that remembers where every value came from.

PyYAML's constructors throw away positions, so we compose the node graph with the safe (C when
available) loader and build plain Python data ourselves. Mappings and sequences come back as
:class:`LocatedDict` and :class:`LocatedList`, which behave like ``dict`` and ``list`` but also
know the file, line and column of each key and item. Overlay merging keeps those locations, so
an error in a merged spec still points into the file that supplied the bad value.

Only plain data is accepted: any tag outside YAML's core schema (``!!python/...``, custom tags)
is refused, and aliases are expanded under a budget so a "billion laughs" document fails fast.
Nesting is counted on libyaml's event stream before any node is composed: composing recurses
in C, and a few thousand levels (``[[[[...``, 60 KB) overflowed the C stack with libyaml 0.2.5.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from airflow_mlpipe.spec.errors import Location, Problem, SpecError

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 1024 * 1024
# Enough for any real spec (a 500-stage spec has about 10,000 values), small enough that an
# alias bomb is refused after a few milliseconds.
MAX_VALUES = 50_000
MAX_DEPTH = 64

_CORE_TAG = "tag:yaml.org,2002:"
_STR_TAG = _CORE_TAG + "str"
# The safe constructors of the other core-schema scalars, called directly: construct_object's
# bookkeeping (recursion guard, memo of every node) is a third of the parse time of a spec.
_SCALAR_CONSTRUCTORS = {
    _CORE_TAG + name: yaml.constructor.SafeConstructor.yaml_constructors[_CORE_TAG + name]
    for name in ("int", "float", "bool", "null", "timestamp")
}
_MAPPING_TAGS = {_CORE_TAG + "map"}
_SEQUENCE_TAGS = {_CORE_TAG + "seq"}
_MERGE_TAG = _CORE_TAG + "merge"
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # YAML's line breaks


class LocatedDict(dict):
    """A mapping from YAML that knows where it, its keys and its values were written."""

    __slots__ = ("key_locations", "location", "value_locations")

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.key_locations: dict[Any, Location] = {}
        self.value_locations: dict[Any, Location] = {}

    def set(self, key: Any, value: Any, key_location: Location, value_location: Location) -> None:
        self[key] = value
        self.key_locations[key] = key_location
        self.value_locations[key] = value_location


class LocatedList(list):
    """A sequence from YAML that knows where it and each item were written."""

    __slots__ = ("item_locations", "location")

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.item_locations: list[Location] = []

    def add(self, value: Any, location: Location) -> None:
        self.append(value)
        self.item_locations.append(location)


def read_yaml_file(path: Path) -> Any:
    """Read one YAML file into located plain data, or raise :class:`SpecError`."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError([Problem(f"cannot read the file: {exc.strerror}", Location(file, 1, 1))]) from None
    return parse_yaml(raw, file)


def parse_yaml(raw: bytes | str, file: str) -> Any:
    """Parse YAML text (bytes are decoded as UTF-8) into located plain data."""
    if isinstance(raw, str):
        # Checked as bytes, like a file: the size limit counts bytes, and a lone surrogate (which
        # UTF-8 cannot encode) is reported as an invalid byte instead of crashing the parser.
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            [
                Problem(
                    f"the file is {len(raw)} bytes; specs are limited to {MAX_FILE_BYTES} bytes",
                    Location(file, 1, 1),
                    suggestion="split the pipeline or move large values (queries, lists) into files",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            [
                Problem(
                    f"byte 0x{raw[exc.start]:02x} is not valid UTF-8",
                    Location(file, line, column),
                    suggestion="save the file as UTF-8",
                )
            ]
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        _check_nesting(text, file)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_problem(exc, file, text)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; position is a byte offset
        before = text.encode("utf-8")[: exc.position]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        message = str(exc).split("\n")[0]
        raise SpecError(
            [
                Problem(
                    f"invalid YAML: {message}",
                    Location(file, line, column),
                    suggestion="remove the character, or write it as an escape in a double-quoted string",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:  # errors without a position
        raise SpecError([Problem(f"invalid YAML: {exc}", Location(file, 1, 1))]) from None
    except RecursionError:
        raise SpecError([Problem("the document is nested too deeply", Location(file, 1, 1))]) from None
    if node is None:
        raise SpecError(
            [
                Problem(
                    "the file is empty",
                    Location(file, 1, 1),
                    suggestion="a spec needs at least 'name', 'version', 'metadata' and 'stages'; "
                    "run 'mlpipe new NAME' for a starting point",
                )
            ]
        )
    return _Builder(file, text).build(node)


_STARTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, *_STARTS)


class _Open:
    """A mapping or sequence being read by :func:`_check_nesting`: what the builder's path needs."""

    __slots__ = ("depth", "events", "is_mapping", "key", "merge")

    def __init__(self, is_mapping: bool, depth: int, merge: bool) -> None:
        self.is_mapping = is_mapping
        self.depth = depth  # of its children, as :class:`_Builder` counts it
        self.merge = merge  # the list of a '<<: [*a, *b]'
        self.events = 0  # child node events seen; in a mapping, even ones are keys
        self.key: yaml.Event | None = None


def _check_nesting(text: str, file: str) -> None:
    """Refuse a document nested deeper than :data:`MAX_DEPTH`, before anything is composed.

    Pulls libyaml's events one by one (the parser keeps its own stack, it does not recurse).
    Parse errors propagate as they would from ``yaml.compose``. Needed even with libyaml 0.2.6,
    which stops at 1000 levels: composing 1000 levels still overflows a 256 KB thread stack.
    """
    # The bare count of open collections is an upper bound of the builder's depth ('<<' merges
    # only lower it); the exact count, which also locates the problem, runs only above the limit.
    loader = _Loader(text)
    try:
        depth = peak = 0
        for event in iter(loader.get_event, None):
            kind = type(event)
            if kind is _MAPPING_START or kind is _SEQUENCE_START:
                depth += 1
                if depth > peak:
                    peak = depth
            elif kind is _MAPPING_END or kind is _SEQUENCE_END:
                depth -= 1
    finally:
        loader.dispose()
    if peak > MAX_DEPTH:
        _refuse_deep(text, file)


_MAPPING_START, _SEQUENCE_START = yaml.MappingStartEvent, yaml.SequenceStartEvent
_MAPPING_END, _SEQUENCE_END = yaml.MappingEndEvent, yaml.SequenceEndEvent


def _refuse_deep(text: str, file: str) -> None:
    """Raise the problem :class:`_Builder` would for a node deeper than :data:`MAX_DEPTH`.

    Counts depth on the events as the builder does on nodes: same message, line, column, field.
    """
    loader = _Loader(text)
    try:
        stack: list[_Open] = []
        anchors: dict[str, yaml.Event] = {}
        get_event = loader.get_event  # what yaml.parse() loops over, without its generator
        while (event := get_event()) is not None:
            if isinstance(event, _ENDS):
                stack.pop()
                continue
            if not isinstance(event, _NODE_EVENTS):
                continue  # stream and document boundaries
            if event.anchor is not None and not isinstance(event, yaml.AliasEvent):
                anchors[event.anchor] = event
            parent = stack[-1] if stack else None
            depth = parent.depth if parent else 0
            is_key = parent is not None and parent.is_mapping and parent.events % 2 == 0
            # '<<: [*a, *b]': the builder builds neither the '<<' key nor its list, only the
            # merged mappings, one level down (not two).
            merge_key = is_key and _is_merge_key(event, loader)
            merge_list = (
                parent is not None
                and parent.is_mapping
                and not is_key
                and isinstance(event, yaml.SequenceStartEvent)
                and _is_merge_key(parent.key, loader)
            )
            if depth > MAX_DEPTH and not merge_key and not merge_list:
                # An alias is built from the node it names, so the builder points there.
                named = anchors.get(event.anchor or "") if isinstance(event, yaml.AliasEvent) else None
                location = _event_location(named or event, text, file)
                path = _event_path(stack, loader)
                message = f"the document is nested more than {MAX_DEPTH} levels deep"
                raise SpecError([Problem(message, location, path)])
            if parent is not None:
                if is_key:
                    parent.key = event
                parent.events += 1
            if isinstance(event, _STARTS):
                child_depth = depth if merge_list else depth + 1
                stack.append(_Open(isinstance(event, yaml.MappingStartEvent), child_depth, merge_list))
    finally:
        loader.dispose()


def _event_location(event: yaml.Event, text: str, file: str) -> Location:
    mark = event.start_mark
    if mark is None:  # pragma: no cover - libyaml marks every event
        return Location(file, 1, 1)
    if mark.index >= len(text):
        return _end_of(text, file)
    return Location(file, mark.line + 1, mark.column + 1)


def _event_path(stack: list[_Open], loader: Any) -> str:
    """The field path :class:`_Builder` gives the node whose event comes next under ``stack``."""
    path = ""
    for index, open_ in enumerate(stack):
        # Each collection's child on the way down is its latest; the innermost one's child (the
        # refused node) is not counted yet.
        counted = open_.events if index == len(stack) - 1 else open_.events - 1
        if open_.merge:
            continue  # the builder reads '<<' sources with the mapping's own path
        if not open_.is_mapping:
            path += f"[{counted}]"
            continue
        if counted % 2 == 0:
            break  # a key: built with its mapping's path
        key = open_.key
        if _is_merge_key(key, loader):
            continue
        name: Any = "?"
        if isinstance(key, yaml.ScalarEvent):
            name = key.value
            tag = key.tag or loader.resolve(yaml.ScalarNode, key.value, key.implicit)
            construct = _SCALAR_CONSTRUCTORS.get(tag)
            if construct is not None:
                try:
                    name = construct(loader, yaml.ScalarNode(tag, key.value))
                except Exception:  # a bad key: the builder reports it, here it only names a path
                    name = key.value
        path = f"{path}.{name}" if path else str(name)
    return path


def _is_merge_key(key: yaml.Event | None, loader: Any) -> bool:
    return (
        isinstance(key, yaml.ScalarEvent)
        and key.value == "<<"
        and (key.tag or loader.resolve(yaml.ScalarNode, key.value, key.implicit)) == _MERGE_TAG
    )


def _end_of(text: str, file: str) -> Location:
    """Where ``text`` ends (libyaml puts the end of a file without a final line break on a line
    after the last one)."""
    lines = _LINE_BREAK.split(text)
    return Location(file, len(lines), len(lines[-1]) + 1)


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str, text: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    location = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
    message = exc.problem or "invalid YAML"
    if "exceeded maximum nesting depth" in message:
        # libyaml >= 0.2.6 stops at 1000 levels, and its scanner reads a flow collection's
        # brackets ahead of the events that _check_nesting counts: the same refusal, told alike.
        return Problem(f"the document is nested more than {MAX_DEPTH} levels deep", location)
    if exc.context:
        message = f"{exc.context}; {message}"
    suggestion = ""
    index = getattr(mark, "index", None)
    if isinstance(index, int) and index >= len(text):
        location = _end_of(text, file)
    # libyaml (the C loader) does not quote the offending character: look at the text itself.
    at_mark = text[index : index + 1] if isinstance(index, int) else ""
    if "\\t" in message or "'\t'" in message or "tab character" in message or at_mark == "\t":
        suggestion = "YAML indents with spaces, not tabs: replace the tab with spaces"
    elif "mapping values are not allowed" in message:
        suggestion = "quote values that contain ': ' or check the indentation of this line"
    elif "expected a single document" in message:
        suggestion = "a spec file holds one document: remove the extra '---'"
    return Problem(f"YAML syntax error: {message}", location, suggestion=suggestion)


class _Builder:
    """Turns a composed node graph into located plain data, within a value budget."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.values = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def location(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        if mark.index >= len(self.text):  # an empty value at the very end ('? key')
            return _end_of(self.text, self.file)
        return Location(self.file, mark.line + 1, mark.column + 1)

    def fail(self, node: yaml.Node, message: str, suggestion: str = "", path: str = "") -> SpecError:
        return SpecError([Problem(message, self.location(node), path, suggestion)])

    def build(self, node: yaml.Node, depth: int = 0, path: str = "", location: Location | None = None) -> Any:
        """Plain data for ``node``; ``location`` is the node's own, when the caller has it already."""
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.fail(
                node,
                f"the document expands to more than {MAX_VALUES} values",
                suggestion="this usually means aliases nested inside aliases (a 'billion laughs' "
                "document); write the values out instead",
                path=path,
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"the document is nested more than {MAX_DEPTH} levels deep", path=path)
        tag = node.tag
        if isinstance(node, yaml.ScalarNode):
            if tag == _STR_TAG:
                return node.value  # what SafeConstructor returns for a string, without its bookkeeping
            construct = _SCALAR_CONSTRUCTORS.get(tag)
            if construct is None:
                raise self._bad_tag(node, path)
            try:
                return construct(self.constructor, node)
            # PyYAML's constructors trust the resolver: an explicit tag on a bad value ('!!bool abc',
            # '!!int ""', '!!timestamp x') raises KeyError, IndexError or AttributeError.
            except Exception as exc:
                shown = tag.replace(_CORE_TAG, "!!")
                reason = exc if isinstance(exc, ValueError) else f"not a valid {shown}"
                raise self.fail(node, f"invalid value {node.value!r}: {reason}", path=path) from None
        if isinstance(node, yaml.SequenceNode):
            if tag not in _SEQUENCE_TAGS:
                raise self._bad_tag(node, path)
            sequence = LocatedList(location or self.location(node))
            for index, item in enumerate(node.value):
                item_location = self.location(item)
                sequence.add(self.build(item, depth + 1, f"{path}[{index}]", item_location), item_location)
            return sequence
        if isinstance(node, yaml.MappingNode):
            if tag not in _MAPPING_TAGS:
                raise self._bad_tag(node, path)
            return self._mapping(node, depth, path, location or self.location(node))
        raise self.fail(node, f"unsupported YAML node {type(node).__name__}")  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, depth: int, path: str, location: Location) -> LocatedDict:
        mapping = LocatedDict(location)
        merged: LocatedDict | None = None
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged = self._merge_sources(value_node, depth, path)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                message = "mapping keys must be plain scalars, not lists or mappings"
                raise self.fail(key_node, message, path=path)
            key = self.build(key_node, depth + 1, path)
            key_path = f"{path}.{key}" if path else str(key)
            if key in mapping:
                first = mapping.key_locations[key]
                raise self.fail(
                    key_node,
                    f"duplicate key '{key}' (first written at line {first.line})",
                    "remove one of them; YAML keeps only the last, which hides mistakes",
                    key_path,
                )
            value_location = self.location(value_node)
            value = self.build(value_node, depth + 1, key_path, value_location)
            mapping.set(key, value, self.location(key_node), value_location)
        if merged is not None:
            # Explicit keys win over merged ones ('<<' semantics).
            for key, value in merged.items():
                if key not in mapping:
                    mapping.set(key, value, merged.key_locations[key], merged.value_locations[key])
        return mapping

    def _merge_sources(self, node: yaml.Node, depth: int, path: str) -> LocatedDict:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged = LocatedDict(self.location(node))
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise self.fail(source, "'<<' merges mappings only", path=path)
            built = self.build(source, depth + 1, path)
            for key, value in built.items():
                if key not in merged:
                    merged.set(key, value, built.key_locations[key], built.value_locations[key])
        return merged

    def _bad_tag(self, node: yaml.Node, path: str) -> SpecError:
        tag = node.tag.replace(_CORE_TAG, "!!")
        return self.fail(
            node,
            f"the tag '{tag}' is not allowed",
            "specs hold plain data (strings, numbers, booleans, lists, mappings); remove the tag",
            path,
        )
