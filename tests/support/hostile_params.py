"""Hostile job requests: a valid request of a job kind with one parameter or one array changed at a
time into what no well-behaved client sends (the wrong JSON type, numbers at and past every bound,
long strings, control characters, path traversal, deep or huge lists and objects, unknown and
missing keys, arrays of the wrong dtype, shape or size, non-finite values), for fuzzing each kind's
schema and checks through a live server (tests/test_job_params_fuzz.py).

``mutations(kind_schema, params, arrays)`` lists every single change as ``Mutation`` (what it
changes, how, and the request it makes), from the kind's schema as ``welcome.kinds`` describes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from handforge_shared.protocol import DTYPES

MISSING = object()  # the field is left out


def _nested_list(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


# (label, value): every parameter gets each of these, whatever its type
HOSTILE_VALUES: list[tuple[str, Any]] = [
    ("null", None), ("true", True), ("false", False), ("zero", 0), ("one", 1), ("minus one", -1),
    ("zero float", 0.0), ("half", 0.5), ("minus half", -0.5), ("1e308", 1e308), ("-1e308", -1e308),
    ("5e-324", 5e-324), ("2**31", 2**31), ("2**63", 2**63), ("2**64", 2**64), ("-2**63", -2**63),
    ("2**70", 2**70), ("10**400", 10**400),
    ("empty string", ""), ("long string", "x" * 50_000), ("string of 5000", "a" * 5000),
    ("control characters", "a\x00b\n\x1b[2K\r\x7f\u2028"), ("NUL", "\x00"), ("newline", "\n"),
    ("path traversal", "../../../../etc/passwd"), ("absolute path", "/etc/passwd"), ("dot dot", ".."),
    ("lone surrogate", "\ud800"), ("number string", "12"), ("unicode", "ｈａｎｄ ✋🏽"), ("spaces", "   "),
    ("empty list", []), ("list of one", [1]), ("list of strings", ["left", "right"]),
    ("list of 10000", [0] * 10_000), ("list of mixed", [None, True, 1, 1.5, "x", [], {}]),
    ("nested list 200", _nested_list(200)), ("nested list 5000", _nested_list(5000)),
    ("empty object", {}), ("object", {"name": "x"}), ("nested object 200", _nested_dict(200)),
    ("object of 2000 keys", {f"k{i}": i for i in range(2000)}),
]


@dataclass(frozen=True)
class Mutation:
    """One change of a valid request: ``where`` (``params.x`` or ``arrays.y``), ``how`` (words), and the
    request it makes."""

    where: str
    how: str
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def __str__(self) -> str:
        return f"{self.where} = {self.how}"


def _around(lo: Any, hi: Any, integer: bool) -> list[tuple[str, Any]]:
    """Values at and just past a numeric parameter's bounds."""
    out = []
    step = 1 if integer else 1e-9
    for name, bound in (("min", lo), ("max", hi)):
        if bound is None:
            continue
        out += [(f"{name} ({bound})", bound), (f"{name} - step", bound - step), (f"{name} + step", bound + step)]
        if not integer:
            out.append((f"{name} as an integer", int(bound)) if float(bound).is_integer() else
                       (f"{name} rounded", round(bound)))
    return out


# inside a JSON document sent as a string parameter (image.transfer's source_labels): fewer, at every place in it
INNER_VALUES: list[tuple[str, Any]] = [
    ("null", None), ("true", True), ("minus one", -1), ("1e308", 1e308), ("2**70", 2**70), ("empty string", ""),
    ("a string", "x"), ("empty list", []), ("list of one", [1]), ("empty object", {}),
    ("nested list 200", _nested_list(200)),
]


def _json_places(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths to every object entry and the first item of every list in a parsed JSON document."""
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _json_places(inner, (*path, key))
    elif isinstance(value, list) and value:
        yield from _json_places(value[0], (*path, 0))


def _replaced(document: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        out = {k: v for k, v in document.items() if k != head or new is not MISSING or rest}
        if head in out:
            out[head] = _replaced(document[head], rest, new)
        return out
    return [_replaced(v, rest, new) if i == head else v for i, v in enumerate(document)
            if i != head or new is not MISSING or rest]


def json_values(document: Any) -> Iterator[tuple[str, str]]:
    """A JSON document (sent as a string) changed at one place at a time: each value replaced, left out,
    wrapped in a list (a batch where one was expected), an unknown key added; and documents that are no object."""
    yield "JSON null", "null"
    yield "JSON list", "[]"
    yield "JSON number", "1e400"
    yield "JSON cut short", json.dumps(document)[:-1]
    for path in _json_places(document):
        where = ".".join(map(str, path)) or "the document"
        for label, hostile in INNER_VALUES:
            yield f"JSON {where} = {label}", json.dumps(_replaced(document, path, hostile))
        inner = document
        for step in path:
            inner = inner[step]
        yield f"JSON {where} in a list", json.dumps(_replaced(document, path, [inner]))
        yield f"JSON {where} twice in a list", json.dumps(_replaced(document, path, [inner, inner]))
        if path:
            yield f"JSON {where} left out", json.dumps(_replaced(document, path, MISSING))
        if isinstance(inner, dict):
            yield f"JSON {where} with an unknown key", json.dumps(_replaced(document, path, {**inner, "zz": 1}))


def param_values(spec: dict[str, Any], value: Any) -> Iterator[tuple[str, Any]]:
    """Hostile values of one parameter whose schema is ``spec`` (``welcome.kinds[k].params[name]``) and
    whose valid value is ``value``."""
    yield from HOSTILE_VALUES
    yield "left out", MISSING
    kind = spec["type"]
    if kind in ("number", "integer"):
        yield from _around(spec.get("min"), spec.get("max"), kind == "integer")
        yield "NaN as a string", "NaN"
        if kind == "integer":
            yield "a float with no fraction", 2.0
    elif kind == "string":
        for choice in spec.get("choices") or []:
            yield f"choice {choice!r}", choice
            yield f"choice {choice!r} upper-cased", choice.upper()
            yield f"choice {choice!r} with a space", f" {choice}"
        if isinstance(value, str):
            yield "the value twice", value + value
            yield "the value with a NUL", value + "\x00"
            yield "the value with ../", value + "/../x"
            yield "the value at its max length", (value * (spec["max_length"] // max(1, len(value)) + 1))[
                : spec["max_length"]] if value else "a" * spec["max_length"]
            yield "past its max length", "b" * (spec["max_length"] + 1)
            try:
                document = json.loads(value)
            except ValueError:
                document = None
            if isinstance(document, (dict, list)):
                yield from json_values(document)
    elif kind == "list" and isinstance(value, list):
        item = spec.get("items") or {"type": "any"}
        yield "past its max items", (value or [0]) * (spec.get("max_items", 256) + 1)
        if value:
            yield "its first item twice", [value[0], *value]
            yield "reversed", value[::-1]
            for label, hostile in HOSTILE_VALUES:
                yield f"first item {label}", [hostile, *value[1:]]
            if isinstance(value[0], dict):
                for key in value[0]:
                    for label, hostile in HOSTILE_VALUES:
                        yield f"first item's {key} {label}", [{**value[0], key: hostile}, *value[1:]]
                    yield f"first item without {key}", [{k: v for k, v in value[0].items() if k != key}, *value[1:]]
                yield "first item with an unknown key", [{**value[0], "lens": 50}, *value[1:]]
        for choice in item.get("choices") or []:
            yield f"[{choice!r}]", [choice]
    elif kind == "object" and isinstance(value, dict):
        yield "an object with a non-JSON-number key", {"1e400": 1}
        yield "an object with a huge text", {"text": "t" * 30_000}


def _sized(shape: list[Any] | None, dims: dict[str, list[int]], bound: dict[str, int]) -> tuple[int, ...]:
    if shape is None:
        return (3,)
    return tuple(d if isinstance(d, int) else bound.get(d, dims.get(d, [1, 1])[0]) if isinstance(d, str) else 2
                 for d in shape)


def array_values(spec: dict[str, Any], base: np.ndarray | None, dims: dict[str, list[int]],
                 bound: dict[str, int]) -> Iterator[tuple[str, Any]]:
    """Hostile values of one array whose schema is ``spec`` (``welcome.kinds[k].arrays[name]``); ``base``
    its valid value, None when the request has none (a valid-shaped one is made up then)."""
    dtype = spec["dtypes"][0]
    if base is None:
        shape = _sized(spec["shape"], dims, bound)
        low = spec["min"] if spec["min"] is not None else -1.0
        high = spec["max"] if spec["max"] is not None else 1.0
        base = np.full(shape, max(low, min(high, 0)), dtype=DTYPES[dtype])
        yield "added, valid-shaped", base
    else:
        yield "left out", MISSING
    for other in DTYPES:
        if other != str(base.dtype):
            with np.errstate(over="ignore", invalid="ignore"):  # (float16 overflows to inf: hostile too)
                yield f"as {other}", (np.asarray(base) != 0 if other == "bool"
                                      else np.asarray(base).astype(DTYPES[other]))
    shape = base.shape
    yield "a 0-d scalar", np.asarray(base.reshape(-1)[0] if base.size else 0, dtype=base.dtype)
    yield "empty (0,)", np.zeros((0,), base.dtype)
    if base.ndim:
        yield "0 rows", np.zeros((0, *shape[1:]), base.dtype)
        yield "0 along the last axis", np.zeros((*shape[:-1], 0), base.dtype)
        yield "one row more", np.concatenate([base, base[:1]]) if shape[0] else np.zeros((1, *shape[1:]), base.dtype)
        if shape[0] > 1:
            yield "one row less", base[:-1]
        yield "flattened", base.reshape(-1)
        yield "one column more", np.concatenate([base, base[..., :1]], axis=-1) if shape[-1] else base
        yield "transposed", base.T
    yield "an extra axis", base[None]
    yield "an extra trailing axis", base[..., None]
    yield "1e6 elements", np.zeros((1_000_000,), base.dtype)
    yield "1e6 rows", np.zeros((1_000_000, *shape[1:]), base.dtype) if base.ndim and base[:1].nbytes * 1e6 < 64e6 \
        else np.zeros((1_000_000,), base.dtype)
    yield "non-contiguous (every other row of twice as many)", np.repeat(base, 2, axis=0)[::2] if base.ndim else base
    yield "zeros", np.zeros_like(base)
    floating = base.dtype.kind == "f"
    for label, fill in (("NaN", np.nan), ("inf", np.inf), ("-inf", -np.inf), ("1e30", 1e30), ("-1e30", -1e30),
                        ("the largest float32", np.finfo(np.float32).max), ("1e-30", 1e-30), ("ones", 1.0),
                        ("minus ones", -1.0), ("1e5", 1e5), ("-1e5", -1e5), ("2", 2.0), ("255", 255)):
        if floating:
            with np.errstate(over="ignore", invalid="ignore"):
                yield f"all {label}", np.full_like(base, fill)
            if base.size:
                one = np.array(base, copy=True)
                one.reshape(-1)[-1] = fill
                yield f"its last value {label}", one
        elif np.isfinite(fill) and abs(fill) < 2**31:
            yield f"all {label}", np.full(base.shape, int(fill), dtype=np.int64).astype(base.dtype)
    for name in ("min", "max"):
        if spec[name] is not None and floating and base.size:
            for past, label in ((1e-3, "just past"), (0.0, "exactly")):
                one = np.array(base, copy=True)
                one.reshape(-1)[0] = spec[name] + (past if name == "max" else -past)
                yield f"{label} its {name}", one
    if floating and base.size:
        yield "random large", np.random.default_rng(0).normal(0, 1e3, base.shape).astype(base.dtype)
        yield "float64 precision values", (base.astype(np.float64) + 1e-12).astype(base.dtype)


def mutations(schema: dict[str, Any], params: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[Mutation]:
    """Every single change of the request (``params``, ``arrays``) of a job kind whose schema (as
    ``welcome.kinds`` describes it) is ``schema``."""
    out: list[Mutation] = []
    for name, spec in schema["params"].items():
        value = params.get(name, spec.get("default"))
        for how, hostile in param_values(spec, value):
            changed = {k: v for k, v in params.items() if k != name}
            if hostile is not MISSING:
                changed[name] = hostile
            elif name not in params and not spec["required"]:
                continue  # left out already
            out.append(Mutation(f"params.{name}", how, changed, dict(arrays)))
    for how, hostile in HOSTILE_VALUES[:6] + [("a long name", 1)]:
        key = "x" * 300 if how == "a long name" else "unknown_key"
        out.append(Mutation(f"params.{key[:20]}", f"unknown key = {how}", {**params, key: hostile}, dict(arrays)))
    bound = {}
    for name, spec in schema["arrays"].items():
        if spec["shape"] and name in arrays:
            for d, size in zip(spec["shape"], arrays[name].shape):
                if isinstance(d, str):
                    bound.setdefault(d, size)
    for name, spec in schema["arrays"].items():
        for how, hostile in array_values(spec, arrays.get(name), schema["dims"], bound):
            changed = {k: v for k, v in arrays.items() if k != name}
            if hostile is not MISSING:
                changed[name] = hostile
            out.append(Mutation(f"arrays.{name}", how, dict(params), changed))
    for how, hostile in (("float32 (3,)", np.zeros(3, np.float32)), ("uint8 empty", np.zeros(0, np.uint8)),
                         ("bool 0-d", np.asarray(True))):
        out.append(Mutation("arrays.unknown", how, dict(params), {**arrays, "unknown": hostile}))
    return out


__all__ = ["HOSTILE_VALUES", "MISSING", "Mutation", "array_values", "mutations", "param_values"]
