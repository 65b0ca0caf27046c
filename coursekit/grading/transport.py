"""The safe format that carries hidden cases into a learner's kernel and results back out.

No pickle anywhere. A value is written as two files sharing a stem:

* `STEM.safetensors` holds every tensor (safetensors cannot run code when it is read);
* `STEM.json` holds the structure: a tree of nodes
    {"t": "none"} | {"t": "bool", "v": true} | {"t": "int", "v": "-12"} | {"t": "float", "v": "0x1.8p+1"}
    {"t": "str", "v": "..."} | {"t": "tensor", "k": "t0"} | {"t": "tuple" | "list", "v": [nodes]}
    {"t": "dict", "v": [[key node, value node], ...]}   (in order; a key decodes to a hashable value)
    {"t": "other", "type": "numpy.ndarray"}   (anything else: only its type name travels)
  Floats travel as `float.hex` (exact, and NaN/inf without non-standard JSON).

This module is also executed, from its source text, inside the learner's kernel (the grader
sends it there with the harness), so it imports nothing from coursekit and imports torch only
when a tensor is involved. The grader reads with `decode(..., strict=True)`: any node, key or
tensor it does not expect makes the whole file invalid, which the grader scores as a failure.
"""

import json
import re

FORMAT = "coursekit-transport/1"
MAX_DEPTH = 16
MAX_NODES = 100_000
MAX_STR = 10_000
MAX_JSON_BYTES = 20 * 1024 * 1024
_KEY = re.compile(r"^t[0-9]{1,6}$")
_TENSOR_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
                  "float32", "float64", "float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64")


class TransportError(ValueError):
    """A file that does not follow the format exactly."""


def name_of_type(value):
    cls = type(value)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", getattr(cls, "__name__", "object"))
    return name if module in ("builtins", "") else f"{module}.{name}"


def _is_tensor(value):
    import sys
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def encode(value, tensors=None, depth=0):
    """(tree, tensors): the JSON tree of `value` and the dict of tensors it refers to."""
    if tensors is None:
        tensors = {}
    if depth > MAX_DEPTH:
        return {"t": "other", "type": "too deeply nested"}, tensors
    if value is None:
        return {"t": "none"}, tensors
    if type(value) is bool:
        return {"t": "bool", "v": value}, tensors
    if type(value) is int:
        return {"t": "int", "v": str(value)}, tensors
    if type(value) is float:
        return {"t": "float", "v": float(value).hex()}, tensors
    if type(value) is str:
        return {"t": "str", "v": value[:MAX_STR]}, tensors
    if _is_tensor(value):
        import torch
        dtype = str(value.dtype).replace("torch.", "")
        if dtype not in _TENSOR_DTYPES or value.layout != torch.strided or value.is_quantized:
            return {"t": "other", "type": f"torch.Tensor (dtype {dtype}, layout {value.layout})"}, tensors
        key = f"t{len(tensors)}"
        plain = value.detach().cpu().contiguous().clone()
        tensors[key] = plain if type(plain) is torch.Tensor else plain.as_subclass(torch.Tensor)
        return {"t": "tensor", "k": key}, tensors
    if isinstance(value, (tuple, list)) and type(value) in (tuple, list) or _is_size(value):
        kind = "list" if type(value) is list else "tuple"
        items = []
        for item in value:
            node, tensors = encode(item, tensors, depth + 1)
            items.append(node)
        return {"t": kind, "v": items}, tensors
    if isinstance(value, dict):
        pairs = []
        for key, item in value.items():
            key_node, tensors = encode(key, tensors, depth + 1)
            item_node, tensors = encode(item, tensors, depth + 1)
            pairs.append([key_node, item_node])
        return {"t": "dict", "v": pairs}, tensors
    return {"t": "other", "type": name_of_type(value)[:200]}, tensors


def _is_size(value):
    import sys
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Size)


def _reject_constant(name):
    raise TransportError(f"non-standard JSON constant {name}")


def load_json(path, max_bytes=MAX_JSON_BYTES):
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TransportError(f"{path} is larger than {max_bytes} bytes")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise TransportError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise TransportError(f"{path} is not a JSON object")
    return doc


def load_tensors(path, keys):
    """The tensors of STEM.safetensors; exactly `keys` must be there (none when `keys` is empty)."""
    if not keys:
        return {}
    from safetensors.torch import load as st_load
    try:
        with open(path, "rb") as f:
            tensors = st_load(f.read())
    except Exception as exc:
        raise TransportError(f"{path} is not a valid safetensors file: {exc}") from None
    if set(tensors) != set(keys):
        raise TransportError(f"{path} holds tensors {sorted(tensors)}, expected {sorted(keys)}")
    return tensors


def decode(node, tensors, strict=True, depth=0, counter=None, used=None):
    """The value of a tree node. With `strict`, anything unexpected raises TransportError."""
    if counter is None:
        counter = [0]
    counter[0] += 1
    if counter[0] > MAX_NODES or depth > MAX_DEPTH + 1:
        raise TransportError("the value is too large or too deeply nested")
    if not isinstance(node, dict) or not isinstance(node.get("t"), str):
        raise TransportError(f"bad node {str(node)[:80]}")
    t = node["t"]
    allowed = {"none": {"t"}, "bool": {"t", "v"}, "int": {"t", "v"}, "float": {"t", "v"},
               "str": {"t", "v"}, "tensor": {"t", "k"}, "tuple": {"t", "v"}, "list": {"t", "v"},
               "dict": {"t", "v"}, "other": {"t", "type"}}
    if t not in allowed or set(node) != allowed[t]:
        raise TransportError(f"bad node {str(node)[:80]}")
    if t == "none":
        return None
    v = node.get("v")
    if t == "bool":
        if type(v) is not bool:
            raise TransportError("bad bool")
        return v
    if t == "int":
        if type(v) is not str or not re.fullmatch(r"-?[0-9]{1,4000}", v):
            raise TransportError("bad int")
        return int(v)
    if t == "float":
        if type(v) is not str or len(v) > 64:
            raise TransportError("bad float")
        try:
            return float.fromhex(v)
        except (ValueError, OverflowError):
            raise TransportError("bad float") from None
    if t == "str":
        if type(v) is not str or len(v) > MAX_STR:
            raise TransportError("bad str")
        return v
    if t == "tensor":
        k = node["k"]
        if type(k) is not str or not _KEY.match(k) or k not in tensors:
            raise TransportError(f"unknown tensor key {str(k)[:20]}")
        if used is not None:
            if k in used:
                raise TransportError(f"tensor {k} used twice")
            used.add(k)
        return tensors[k].clone()
    if t in ("tuple", "list"):
        if type(v) is not list:
            raise TransportError("bad sequence")
        items = [decode(item, tensors, strict, depth + 1, counter, used) for item in v]
        return items if t == "list" else tuple(items)
    if t == "dict":
        if type(v) is not list or not all(type(p) is list and len(p) == 2 for p in v):
            raise TransportError("bad dict")
        out = {}
        for key_node, item_node in v:
            key = decode(key_node, tensors, strict, depth + 1, counter, used)
            try:
                hash(key)
            except TypeError:
                raise TransportError("bad dict key") from None
            if key in out:
                raise TransportError("repeated dict key")
            out[key] = decode(item_node, tensors, strict, depth + 1, counter, used)
        return out
    name = node["type"]
    if type(name) is not str or len(name) > 200:
        raise TransportError("bad type name")
    return make_opaque(name)


class Opaque:
    """A result the format cannot carry: only its type name came back."""

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<a {self.type_name} object>"

    def __eq__(self, other):
        return False

    __hash__ = None


def opaque_class(type_name):
    """A class named like the learner's type, so messages say `got numpy.ndarray`."""
    safe = re.sub(r"[^A-Za-z0-9_.]", "_", type_name)[:80] or "object"
    return type(safe, (Opaque,), {})


def make_opaque(type_name):
    return opaque_class(type_name)(type_name)
