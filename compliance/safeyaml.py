"""The one YAML loader for every YAML the tool reads (manifests, policies, the sample story);
a manifest named ``*.json`` is read as JSON (YAML's subset) under the same limits.

Safe constructors only (no Python objects), with limits checked on the composed node graph before
any object is built: the size of the text, the nesting depth, and the number of nodes once every
alias is expanded (so a "billion laughs" alias bomb is refused in milliseconds instead of hanging
whatever later walks the result). Uses libyaml's C loader when it is available.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from compliance.errors import InputError
from compliance.runtime import gc_paused

MAX_YAML_BYTES = 64 << 20
MAX_DEPTH = 64
MAX_NODES = 5_000_000  # after alias expansion
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader (libyaml's C one where available) with scalar tag resolution memoised per
    document: the resolver (Python, a regex scan per plain scalar) gives the same tag for the same
    (value, implicit) pair, and a manifest repeats its keys and many values thousands of times."""

    yaml_path_resolvers: dict = {}  # none (the project adds none): the resolver's path hooks are no-ops
    descend_resolver = staticmethod(lambda current_node, current_index: None)  # called per node: kept cheap
    ascend_resolver = staticmethod(lambda: None)

    def __init__(self, stream):
        super().__init__(stream)
        self._tags: dict[tuple[str, Any], str] = {}

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode:
            key = (value, implicit)
            tag = self._tags.get(key)
            if tag is None:
                tag = self._tags[key] = super().resolve(kind, value, implicit)
            return tag
        return super().resolve(kind, value, implicit)


_LOADER = _Loader


def _check_tree(root: yaml.Node, what: str) -> bool:
    """The common case in one cheap pass: when no collection is reached twice (no alias to a
    collection), the expanded size is the node count and the depth the longest path, with the
    same limits and messages. False when a collection is shared (then the full check runs)."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    seq, mapping = yaml.SequenceNode, yaml.MappingNode
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise InputError(f"{what}: more than {MAX_NODES:,} values once its aliases are expanded "
                             "(an alias bomb?)")
        if depth > MAX_DEPTH:
            raise InputError(f"{what}: nested more than {MAX_DEPTH} levels deep")
        cls = type(node)
        if cls is not seq and cls is not mapping:
            continue
        if id(node) in seen:
            return False
        seen.add(id(node))
        if cls is seq:
            stack.extend((c, depth + 1) for c in node.value)
        else:
            for k, v in node.value:
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
    return True


def _check_shared_graph(root: yaml.Node, what: str) -> None:
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise InputError(f"{what}: more than {MAX_NODES:,} values once its aliases are expanded "
                                 "(an alias bomb?)")
            if depth[key] > MAX_DEPTH:
                raise InputError(f"{what}: nested more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        if key in open_:
            raise InputError(f"{what}: a recursive alias (a value that contains itself)")
        open_.add(key)
        stack.append((node, True))
        if len(open_) > MAX_DEPTH:
            raise InputError(f"{what}: nested more than {MAX_DEPTH} levels deep")
        stack.extend((c, False) for c in children if id(c) not in size)


_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _Fallback(Exception):
    """A node the fast build leaves to the safe constructor."""


def _build_tree(loader, node: yaml.Node) -> Any:
    """What ``loader.construct_document`` gives for a tree (no shared collections, depth checked)
    of plain mappings, sequences and scalars, without the constructor's per-node bookkeeping:
    strings are taken as they are, every other scalar goes through the safe constructor. Anything
    else (an explicit tag on a collection, a merge key, an unhashable key) raises ``_Fallback``
    and the constructor builds the whole document (issue 16: ~3x faster on a large manifest)."""
    cls = type(node)
    if cls is yaml.ScalarNode:
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)
    if cls is yaml.SequenceNode and node.tag == _SEQ:
        return [_build_tree(loader, c) for c in node.value]
    if cls is not yaml.MappingNode or node.tag != _MAP:
        raise _Fallback
    out = {}
    for k, v in node.value:
        if type(k) is not yaml.ScalarNode or k.tag not in _PLAIN_KEY_TAGS:
            raise _Fallback  # merge keys (<<), value keys (=), collections as keys
        out[_build_tree(loader, k)] = _build_tree(loader, v)
    return out


def _build_checked(loader, root: yaml.Node) -> Any:
    """:func:`_check_tree` and :func:`_build_tree` in one pass, for the common document: a tree
    within the limits, of plain mappings, sequences and scalars. Anything else (a shared
    collection, a limit reached, a node :func:`_build_tree` leaves to the constructor) raises
    ``_Fallback`` before a result is returned, and the two steps then run one after the other."""
    seen: set[int] = set()
    counted = [1]
    scalar_node, seq_node, map_node = yaml.ScalarNode, yaml.SequenceNode, yaml.MappingNode

    def scalar(node: yaml.Node) -> Any:
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)

    def build(node: yaml.Node, depth: int) -> Any:
        cls = type(node)
        if cls is scalar_node:
            return scalar(node)
        if id(node) in seen:
            raise _Fallback
        seen.add(id(node))
        children = node.value
        counted[0] += 2 * len(children) if cls is map_node else len(children)
        if counted[0] > MAX_NODES or (children and depth >= MAX_DEPTH):
            raise _Fallback
        depth += 1
        if cls is seq_node:
            if node.tag != _SEQ:
                raise _Fallback
            return [c.value if type(c) is scalar_node and c.tag == _STR else build(c, depth) for c in children]
        if cls is not map_node or node.tag != _MAP:
            raise _Fallback
        out = {}
        for k, v in children:
            if type(k) is not scalar_node or k.tag not in _PLAIN_KEY_TAGS:
                raise _Fallback
            out[k.value if k.tag == _STR else scalar(k)] = (
                v.value if type(v) is scalar_node and v.tag == _STR else build(v, depth))
        return out

    return build(root, 1)


_PLAIN_KEY_TAGS = {_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
                   "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}


def load_yaml(text: str | bytes, *, what: str) -> Any:
    """Parse one YAML document with the limits above; any problem is an ``InputError`` naming ``what``."""
    if len(text) > MAX_YAML_BYTES:
        raise InputError(f"{what}: {len(text):,} bytes, more than the {MAX_YAML_BYTES:,} allowed")
    loader = _LOADER(text)
    with gc_paused():  # a parse makes many objects and no garbage: collector passes cost ~2x (issue 16)
        return _load(loader, what)


def _load(loader: Any, what: str) -> Any:
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _build_checked(loader, node)
        except _Fallback:
            pass  # the checks and the build below, one step at a time, give the exact outcome
        if not _check_tree(node, what):
            _check_shared_graph(node, what)
            return loader.construct_document(node)
        try:
            return _build_tree(loader, node)
        except _Fallback:
            return loader.construct_document(node)
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own limit (1,000 levels)
            raise InputError(f"{what}: nested more than {MAX_DEPTH} levels deep") from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{what}: not valid YAML{where}") from None
    except RecursionError:
        raise InputError(f"{what}: nested too deeply") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, *, what: str | None = None, json_ok: bool = False) -> Any:
    """``json_ok``: a ``*.json`` file is parsed as JSON (see :func:`load_json`)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise InputError(f"file not found: {p}") from None
    if size > MAX_YAML_BYTES:
        raise InputError(f"{what or p.name}: {size:,} bytes, more than the {MAX_YAML_BYTES:,} allowed")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what or p.name}: not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror}") from None
    if json_ok and p.suffix.lower() == ".json":
        return load_json(text, what=what or p.name)
    return load_yaml(text, what=what or p.name)


def load_json(text: str, *, what: str) -> Any:
    """A ``.json`` file (JSON is YAML's fast subset: a manifest written by a program parses ~20x
    faster), under the same size and depth limits; NaN and Infinity are refused."""
    import json

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        doc = json.loads(text, parse_constant=no_constant)
    except RecursionError:
        raise InputError(f"{what}: nested too deeply") from None
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise InputError(f"{what}: not valid JSON" + (f" at line {line}" if line else "")) from None
    stack = [(doc, 1)] if isinstance(doc, (dict, list)) else []
    while stack:  # containers only: a non-empty one at the limit has values one level deeper
        value, depth = stack.pop()
        if depth > MAX_DEPTH or (depth == MAX_DEPTH and value):
            raise InputError(f"{what}: nested more than {MAX_DEPTH} levels deep")
        items = value.values() if type(value) is dict else value
        stack.extend((v, depth + 1) for v in items if type(v) is dict or type(v) is list)
    return doc
