"""Read the tensor names, dtypes and shapes of a ``torch.save``'d state dict without torch and
without unpickling: the ``data.pkl`` opcodes are walked symbolically (nothing is imported or
called), accepting only what a plain state dict of tensors contains.

Used at registration (torch-free) for dictionary_learning's ``ae.pt``; loading itself uses
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

from compliance.errors import InputError

STORAGE_DTYPES = {"FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16",
                  "BFloat16Storage": "BF16", "LongStorage": "I64", "IntStorage": "I32",
                  "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
                  "BoolStorage": "BOOL"}
ALLOWED_GLOBALS = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
                   ("torch._utils", "_rebuild_parameter")} | {("torch", s) for s in STORAGE_DTYPES}


class _Call(tuple):
    """A symbolic call (function, args): nothing is executed."""


class _Mark:
    pass


def read_state_dict_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` of a state dict saved by ``torch.save`` (zip format)."""
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise InputError(f"{path.name}: not a torch zip checkpoint (no single data.pkl)")
            data = zf.read(pkl[0])
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name}: not a torch zip checkpoint: {exc}") from None
    stack: list = []
    memo: dict = {}
    try:
        ops = list(pickletools.genops(data))
    except Exception as exc:  # malformed pickle stream
        raise InputError(f"{path.name}: corrupted pickle stream: {exc}") from None
    for op, arg, _pos in ops:
        name = op.name
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            break
        if name == "GLOBAL":
            mod, _, attr = arg.partition(" ")
            if (mod, attr) not in ALLOWED_GLOBALS:
                raise InputError(f"{path.name}: refers to {mod}.{attr}: not a plain state dict "
                                 "of tensors, refused (nothing is unpickled)")
            stack.append(("global", mod, attr))
        elif name == "MARK":
            stack.append(_Mark)
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BININT", "BININT1",
                      "BININT2", "LONG1", "BINFLOAT"):
            stack.append(arg)
        elif name in ("NEWFALSE", "NEWTRUE", "NONE"):
            stack.append({"NEWFALSE": False, "NEWTRUE": True, "NONE": None}[name])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("EMPTY_DICT", "EMPTY_LIST"):
            stack.append({} if name == "EMPTY_DICT" else [])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            del stack[-n:]
            stack.append(items)
        elif name == "TUPLE":
            i = len(stack) - 1 - stack[::-1].index(_Mark)
            items = tuple(stack[i + 1:])
            del stack[i:]
            stack.append(items)
        elif name in ("BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "BINPERSID":
            stack.append(_Call(("persistent", stack.pop())))
        elif name == "REDUCE":
            args = stack.pop()
            fn = stack.pop()
            stack.append({} if fn == ("global", "collections", "OrderedDict") else _Call((fn, args)))
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                items = stack[-2:]
                del stack[-2:]
            else:
                i = len(stack) - 1 - stack[::-1].index(_Mark)
                items = stack[i + 1:]
                del stack[i:]
            target = stack[-1]
            if not isinstance(target, dict):
                raise InputError(f"{path.name}: unexpected pickle structure: refused")
            for k, v in zip(items[::2], items[1::2]):
                target[k] = v
        elif name == "BUILD":
            stack.pop()  # state of an OrderedDict (its _metadata): no tensors
        elif name == "APPENDS" or name == "APPEND":
            raise InputError(f"{path.name}: unexpected list in a state dict: refused")
        else:
            raise InputError(f"{path.name}: pickle opcode {name} is not part of a plain state "
                             "dict of tensors: refused")
    if len(stack) != 1 or not isinstance(stack[0], dict):
        raise InputError(f"{path.name}: not a state dict")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for key, value in stack[0].items():
        out[str(key)] = _tensor_info(path, str(key), value)
    return out


def _tensor_info(path: Path, key: str, value) -> tuple[str, tuple[int, ...]]:
    if isinstance(value, _Call) and value[0] == ("global", "torch._utils", "_rebuild_parameter"):
        value = value[1][0]
    if not (isinstance(value, _Call) and value[0] == ("global", "torch._utils", "_rebuild_tensor_v2")):
        raise InputError(f"{path.name}: entry {key!r} is not a tensor")
    args = value[1]
    storage, size = args[0], args[2]
    try:
        kind = storage[1][1][2]  # ("persistent", ("storage", ("global", "torch", X), key, loc, n))
    except (IndexError, TypeError):
        raise InputError(f"{path.name}: entry {key!r}: unreadable storage") from None
    return STORAGE_DTYPES.get(kind, kind), tuple(int(s) for s in size)
