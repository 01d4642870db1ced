"""The one YAML loader for every YAML the tool reads (manifests, policies, the sample story).

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

MAX_YAML_BYTES = 64 << 20
MAX_DEPTH = 64
MAX_NODES = 5_000_000  # after alias expansion
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_graph(root: yaml.Node, what: str) -> None:
    """Depth and expanded size of the node graph (aliases are shared nodes), iteratively."""
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


def load_yaml(text: str | bytes, *, what: str) -> Any:
    """Parse one YAML document with the limits above; any problem is an ``InputError`` naming ``what``."""
    if len(text) > MAX_YAML_BYTES:
        raise InputError(f"{what}: {len(text):,} bytes, more than the {MAX_YAML_BYTES:,} allowed")
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, what)
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


def load_yaml_file(path: str | Path, *, what: str | None = None) -> Any:
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
    return load_yaml(text, what=what or p.name)
