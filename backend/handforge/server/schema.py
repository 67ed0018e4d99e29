"""Declarative request schemas: what a job kind accepts, checked before a job is queued.

A ``Schema`` lists JSON parameters (``Number``, ``Integer``, ``String``, ``Boolean``, ``ListOf``) and
named arrays (``ArraySpec``: dtypes, shape with fixed sizes or named dimensions, finite values,
value range). Named dimensions ("B", "frames", ...) must agree across the arrays of one request
and stay within the bounds the schema gives them. ``describe()`` is the JSON form that ``welcome``
announces, so a client can build its UI from it and check requests itself.

Every rejection is a ``ProtocolError`` with code ``invalid_params`` whose message starts with the
offending field ("params.steps: ...", "arrays.right.hand_pose: ...").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from handforge_shared.protocol import DTYPES, FLOAT_DTYPES, ErrorCode, ProtocolError, escaped_length

_REQUIRED = object()  # no default: the parameter must be given
Dim = int | str | None  # fixed size, named dimension, or any size


def _bound_text(bound: float) -> str:
    """A bound as said, a multiple of π named so (12.566370614359172 alone was the rotations' 4π)."""
    turns = bound / math.pi
    named = bound and abs(turns - round(turns)) < 1e-9 and abs(turns) >= 1
    return f"{bound} ({round(turns)}π)" if named else f"{bound}"


def invalid(where: str, message: str, hint: str = "") -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_PARAMS, f"{where}: {message}", hint, field=where)


def refuse_unread(params: Mapping[str, Any], specs: Mapping[str, "Param"], names: Sequence[str], reader: str,
                  why: str) -> None:
    """Settings ``names`` that only engine ``reader`` reads, given (other than their defaults in ``specs``, the
    kind's params) to another engine: refused, naming them; that engine would ignore them, unsaid. ``why``
    says what the engine that runs does instead."""
    given = [k for k in names if params[k] != specs[k].default]
    if given:
        one = len(given) == 1  # ("cfg_scale only apply to …, or leave them out")
        raise invalid(f"params.{given[0]}", f"{', '.join(given)} only appl{'ies' if one else 'y'} to engine '{reader}' "
                      f"({why})", f"set engine to '{reader}', or leave {'it' if one else 'them'} out")


@dataclass(frozen=True)
class Param:
    """A JSON parameter. ``default`` omitted: the parameter is required."""

    doc: str = ""
    default: Any = _REQUIRED
    nullable: bool = False  # whether JSON null is accepted (and means "not set")

    type_name = "any"

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name, "required": self.required, "doc": self.doc}
        if not self.required:
            out["default"] = self.default
        if self.nullable:
            out["nullable"] = True
        return out | self._describe_extra()

    def _describe_extra(self) -> dict[str, Any]:
        return {}

    def check(self, value: Any, where: str) -> Any:
        if value is None and self.nullable:
            return None
        return self._check(value, where)

    def _check(self, value: Any, where: str) -> Any:
        return value


def _range_text(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    return f"at least {lo}" if lo is not None else f"at most {hi}"


@dataclass(frozen=True)
class Number(Param):
    min: float | None = None
    max: float | None = None
    type_name = "number"

    def _describe_extra(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max}

    def _check(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise invalid(where, f"must be a finite number, got {_short(value)}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise invalid(where, f"must be {_range_text(self.min, self.max)}, got {value!r}")
        return float(value)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (JSON has no size limit on integers)
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} characters)"


@dataclass(frozen=True)
class Integer(Param):
    min: int | None = None
    max: int | None = None
    type_name = "integer"

    def _describe_extra(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max}

    def _check(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(where, f"must be an integer, got {_short(value)}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise invalid(where, f"must be {_range_text(self.min, self.max)}, got {_short(value)}")
        return value


@dataclass(frozen=True)
class String(Param):
    choices: tuple[str, ...] | None = None
    max_length: int = 4096
    # max_length counts the text as the message header carries it (escaped_length), not its characters: for a
    # JSON text, whose quotes take two bytes each there, so that what the limit takes fits the header
    escaped: bool = False
    type_name = "string"

    def _describe_extra(self) -> dict[str, Any]:
        return {"choices": list(self.choices) if self.choices else None, "max_length": self.max_length,
                **({"escaped": True} if self.escaped else {})}

    def _check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):  # (shortened: a labels dict sent as is was echoed whole, 7 KB)
            raise invalid(where, f"must be a string, got {_short(value)}",
                          "send it as JSON text: json.dumps(value)" if isinstance(value, (dict, list)) else "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON's "\ud800" escape decodes to half a character: the
            # tokenizer (and any file or log it reaches) refuses it deep inside a job as an internal error
            raise invalid(where, f"is not valid text: character {exc.start} is {value[exc.start]!r}, half of a "
                          "UTF-16 surrogate pair", "send whole characters (UTF-8 text)") from None
        if self.choices is not None and value not in self.choices:
            raise invalid(where, f"must be one of {', '.join(map(repr, self.choices))}, got {value!r}")
        if self.escaped:
            escaped = escaped_length(value)
            if escaped > self.max_length:
                raise invalid(where, f"is {escaped} characters long as the message header carries it, JSON-escaped "
                              f"({len(value)} as written: each \" or \\ takes 2, a control or non-ASCII character 6); "
                              f"the limit is {self.max_length}", "send a shorter text; welcome.kinds gives its "
                              "max_length, counted escaped")
        elif len(value) > self.max_length:
            raise invalid(where, f"is {len(value)} characters long; the limit is {self.max_length}")
        return value


@dataclass(frozen=True)
class Boolean(Param):
    type_name = "boolean"

    def _check(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise invalid(where, f"must be true or false, got {value!r}")
        return value


@dataclass(frozen=True)
class ListOf(Param):
    item: Param = field(default_factory=Param)
    min_items: int = 0
    max_items: int = 256
    unique: bool = False
    type_name = "list"

    def _describe_extra(self) -> dict[str, Any]:
        return {"items": self.item.describe(), "min_items": self.min_items, "max_items": self.max_items,
                "unique": self.unique}

    def _check(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise invalid(where, f"must be a list, got {value!r}")
        if not self.min_items <= len(value) <= self.max_items:
            raise invalid(where, f"must have {_range_text(self.min_items, self.max_items)} items, got {len(value)}")
        out = [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if self.unique and len({repr(v) for v in out}) != len(out):
            raise invalid(where, "must not repeat items")
        return out


@dataclass(frozen=True)
class JsonObject(Param):
    """A JSON object passed through as is (its size is bounded by the header limit)."""

    type_name = "object"

    def _check(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise invalid(where, f"must be a JSON object, got {value!r}")
        return value


@dataclass(frozen=True)
class ArraySpec:
    """One named input array.

    ``shape``: a tuple of fixed sizes (int), named dimensions (str, bound across the request's
    arrays) or None (any size); ``shape=None`` accepts any shape. ``finite`` rejects NaN/inf in
    floating arrays; ``min``/``max`` bound every value. ``requires`` names arrays that must come
    with this one.
    """

    shape: tuple[Dim, ...] | None = None
    dtypes: tuple[str, ...] = ("float32", "float64")
    required: bool = True
    finite: bool = True
    min: float | None = None
    max: float | None = None
    requires: tuple[str, ...] = ()
    doc: str = ""
    # an image (height, width, channels): a shape error says so, and names a channels-first (C, H, W) or a
    # grey (H, W) one (they were "dimension height (axis 0) must be between 16 and 4096, got 3")
    image: bool = False

    def __post_init__(self) -> None:
        unknown = [d for d in self.dtypes if d not in DTYPES]
        if unknown:
            raise ValueError(f"unknown dtypes {unknown}; the protocol has {list(DTYPES)}")

    def describe(self) -> dict[str, Any]:
        return {"shape": None if self.shape is None else list(self.shape), "dtypes": list(self.dtypes),
                "required": self.required, "finite": self.finite, "min": self.min, "max": self.max,
                "requires": list(self.requires), "doc": self.doc}


ANY_ARRAY = ArraySpec(dtypes=tuple(DTYPES), finite=False, required=False)


def _shape_text(shape: tuple[Dim, ...]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _image_text(spec: ArraySpec, lo: int, hi: int) -> str:
    """An image array in words: "(H, W, 3) uint8 RGB, or (H, W, 4) with alpha"."""
    names = {3: f"{' or '.join(spec.dtypes)} RGB", 4: "with alpha"}
    return ", or ".join(f"(H, W, {c}) {names.get(c, 'channels')}" for c in range(lo, hi + 1))


def _array_text(spec: ArraySpec) -> str:
    """The arrays ``spec`` takes: "float32 or float64 of shape (10,)"."""
    return " or ".join(spec.dtypes) + ("" if spec.shape is None else f" of shape {_shape_text(spec.shape)}")


def _how_to_send(name: str, spec: ArraySpec) -> str:
    return f"send a numpy array: arrays={{{name!r}: numpy.asarray(values, dtype=numpy.{spec.dtypes[0]})}}"


def _wire_dtype(arr: np.ndarray) -> str:
    return next(n for n, dt in DTYPES.items() if dt == arr.dtype)


@dataclass(frozen=True)
class Schema:
    """Parameters and arrays of one job kind. ``extra_arrays`` (if set) accepts arrays with other
    names under that spec; ``max_bytes`` bounds the total size of the request's arrays."""

    params: Mapping[str, Param] = field(default_factory=dict)
    arrays: Mapping[str, ArraySpec] = field(default_factory=dict)
    dims: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    extra_arrays: ArraySpec | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        named = {d for spec in self.arrays.values() if spec.shape for d in spec.shape if isinstance(d, str)}
        unbounded = named - set(self.dims)
        if unbounded:
            raise ValueError(f"named dimensions {sorted(unbounded)} need bounds in dims")

    def describe(self) -> dict[str, Any]:
        return {
            "params": {name: p.describe() for name, p in self.params.items()},
            "arrays": {name: a.describe() for name, a in self.arrays.items()},
            "dims": {name: list(bounds) for name, bounds in self.dims.items()},
            "extra_arrays": None if self.extra_arrays is None else self.extra_arrays.describe(),
            "max_bytes": self.max_bytes,
        }

    def validate(self, params: Mapping[str, Any] | None, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Check a request; return its parameters with defaults filled in."""
        checked = self._check_params(params or {})
        self._check_arrays(arrays)
        return checked

    def _check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            spec = self.arrays.get(unknown[0])
            if spec is not None:  # (a list put in params: it was "not a parameter", the array it is unsaid)
                raise invalid(f"params.{unknown[0]}", f"is an array of this job kind, not a parameter: send it in "
                              f"arrays, {_array_text(spec)}", _how_to_send(unknown[0], spec))
            known = ", ".join(self.params) or "none"
            raise invalid(f"params.{unknown[0]}", "is not a parameter of this job kind", f"known parameters: {known}")
        out = {}
        for name, spec in self.params.items():
            where = f"params.{name}"
            if name in params:
                out[name] = spec.check(params[name], where)
            elif spec.required:
                raise invalid(where, "is required", spec.doc)
            else:
                out[name] = spec.default
        return out

    def _check_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        bound: dict[str, tuple[int, str]] = {}
        for name, arr in arrays.items():
            spec = self.arrays.get(name, self.extra_arrays)
            if spec is None:
                known = ", ".join(self.arrays) or "none"
                raise invalid(f"arrays.{name}", "is not an input of this job kind", f"known arrays: {known}")
            self._check_array(f"arrays.{name}", spec, arr, bound)
        for name, spec in self.arrays.items():
            if spec.required and name not in arrays:
                raise invalid(f"arrays.{name}", "is required", spec.doc)
            if name in arrays:
                for other in spec.requires:
                    if other not in arrays:
                        raise invalid(f"arrays.{other}", f"is required with arrays.{name}")
        total = sum(a.nbytes for a in arrays.values())
        if self.max_bytes is not None and total > self.max_bytes:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"the arrays hold {total} bytes; this job kind accepts at "
                                f"most {self.max_bytes}", "split the request into smaller batches")

    def _check_image(self, where: str, spec: ArraySpec, shape: tuple[int, ...]) -> None:
        """An image array's layout: (H, W, C), C in its channels' bounds (its sizes: checked as any dimension's)."""
        lo, hi = self.dims[spec.shape[-1]]
        if len(shape) == 3 and lo <= shape[2] <= hi:
            return
        want = f"must be an image, {_image_text(spec, lo, hi)}, top row first"
        if len(shape) == 3 and lo <= shape[0] <= hi:
            raise invalid(where, f"{want}; its shape {shape} looks channels-first (C, H, W)",
                          "transpose it to (H, W, C): np.transpose(image, (1, 2, 0))")
        if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
            raise invalid(where, f"{want}; its shape {shape} is a grey image", "send it as RGB: "
                          "np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2); a PIL image: image.convert('RGB')")
        raise invalid(where, f"{want}, got shape {shape}")

    def _check_array(self, where: str, spec: ArraySpec, arr: np.ndarray, bound: dict[str, tuple[int, str]]) -> None:
        dtype = _wire_dtype(arr)
        if dtype not in spec.dtypes:  # (a list of Python ints arrives as int64: said with the type to send)
            raise invalid(where, f"has dtype {dtype}; send {_array_text(spec)}",
                          _how_to_send(where.removeprefix("arrays."), spec))
        if spec.image:
            self._check_image(where, spec, arr.shape)
        if spec.shape is not None:
            if arr.ndim != len(spec.shape):
                # (one item where a leading dimension that may be 1 is missing: said with the axis to add, where the
                # sizes given are the trailing ones; a per-frame array needs 2 frames or more: no such hint)
                first = spec.shape[0]
                one = (arr.ndim == len(spec.shape) - 1 and isinstance(first, str) and self.dims[first][0] <= 1
                       and all(not isinstance(w, int) or w == g for w, g in zip(spec.shape[1:], arr.shape)))
                raise invalid(where, f"must have shape {_shape_text(spec.shape)}, got {tuple(arr.shape)}",
                              f"one along {first} is shape {(1, *arr.shape)}: add the leading axis (array[None])"
                              if one else spec.doc)
            for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
                if isinstance(want, int) and got != want:
                    raise invalid(where, f"must have shape {_shape_text(spec.shape)}, got {tuple(arr.shape)}")
                if isinstance(want, str):
                    lo, hi = self.dims[want]
                    if not lo <= got <= hi:
                        raise invalid(where, f"dimension {want} (axis {axis}) must be between {lo} and {hi}, got {got}")
                    if want in bound and bound[want][0] != got:
                        size, other = bound[want]
                        raise invalid(where, f"dimension {want} is {got} here but {size} in {other}",
                                      f"every array sharing dimension {want} must have the same size along it")
                    bound.setdefault(want, (got, where))
        if arr.size == 0:
            return
        floating = dtype in FLOAT_DTYPES
        if floating and spec.finite:
            bad = ~np.isfinite(arr)
            if bad.any():
                index = list(np.unravel_index(int(np.argmax(bad)), arr.shape))
                raise invalid(where, f"has a non-finite value (NaN or inf) at index {index}")
        if spec.min is not None or spec.max is not None:
            values = arr[np.isfinite(arr)] if floating else arr
            # a bound in the array's own precision: float32(4π) is a hair above float64's 4π, yet it is the bound
            low, high = ((None if b is None else arr.dtype.type(b)) if floating else b for b in (spec.min, spec.max))
            # (the hint: what the array is, its units, from its doc: "1000" metres was a value in millimetres)
            if values.size and low is not None and values.min() < low:
                raise invalid(where, f"has values below {_bound_text(spec.min)} (smallest {values.min()!r})", spec.doc)
            if values.size and high is not None and values.max() > high:
                raise invalid(where, f"has values above {_bound_text(spec.max)} (largest {values.max()!r})", spec.doc)


__all__ = ["ANY_ARRAY", "ArraySpec", "Boolean", "Dim", "Integer", "ListOf", "Number", "Param", "Schema", "String",
           "invalid", "refuse_unread"]
