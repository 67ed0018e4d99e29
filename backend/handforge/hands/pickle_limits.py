"""Bounds on a pickle, checked by walking its opcodes before anything is unpickled.

The C unpickler trusts the numbers in the file: a memo index of 2**32 makes it allocate the whole
memo table, and a million nested one-item tuples overflow the C stack as soon as one is hashed. So
``check_pickle_bounds`` replays the pickle machine's stack on stand-in nodes (``pickletools``
decodes the opcodes and their stack effects, so no object is built) and refuses a pickle that
exceeds ``Limits``: opcodes (time), nesting depth, items per container (dict and set inserts are
quadratic with colliding keys), the elements a value expands to (a memo reference repeats a whole value, so
a 4 kB list of lists of one shared list becomes a 27-million-element array in ``np.asarray``), memo indices, and the classes that would allocate from a size in
the file (``numpy.ndarray``/``numpy.dtype`` called directly). The declared length of every bytes
or string opcode is checked against what is really there, so the unpickler that runs afterwards
never allocates more than the file holds.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass


class PickleBoundsError(ValueError):
    """The pickle exceeds a bound; the message says which."""


@dataclass(frozen=True)
class Limits:
    max_opcodes: int = 100_000
    max_depth: int = 64
    max_container_items: int = 5_000
    max_elements: int = 4 << 20  # expanded, memo references in full; a string counts one per 8 bytes


_MARK = object()
_CONTAINER_FILLERS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_ALLOCATING_CLASSES = {"numpy ndarray", "numpy dtype"}  # allowed only as arguments, never instantiated directly
_INSTANTIATE = {"NEWOBJ", "NEWOBJ_EX", "OBJ", "INST"}


class _Node:
    """One value on the simulated stack: its nesting depth, item count, expanded element count, and the global
    it names."""

    __slots__ = ("depth", "items", "elements", "embedded", "global_name", "text")

    def __init__(self, depth: int = 0, global_name: str | None = None, text: str | None = None,
                 elements: int = 1) -> None:
        self.depth = depth
        self.items = 0
        self.elements = elements
        self.embedded = False  # inside another object: its depth is final, changing it would go unseen
        self.global_name = global_name
        self.text = text


def check_pickle_bounds(data: bytes, limits: Limits = Limits()) -> None:
    """Raise ``PickleBoundsError`` (or ``ValueError`` for a malformed opcode stream) if out of bounds."""
    stack: list = []
    memo: dict[int, _Node] = {}
    for count, (op, arg, pos) in enumerate(pickletools.genops(io.BytesIO(data)), 1):
        if count > limits.max_opcodes:
            raise PickleBoundsError(f"more than {limits.max_opcodes} pickle opcodes")
        name = op.name
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(memo) if name == "MEMOIZE" else arg
            if not stack or stack[-1] is _MARK or index < 0 or index > len(memo):
                raise PickleBoundsError(f"memo index {index} at byte {pos} is out of order")
            memo[index] = stack[-1]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise PickleBoundsError(f"memo index {arg} at byte {pos} was never stored")
            stack.append(memo[arg])
            continue
        if name == "DUP":
            stack.append(_top(stack, pos))
            continue
        popped = _pop(stack, op.stack_before, pos)
        if name == "MARK":
            stack.append(_MARK)
        elif name == "GLOBAL":
            stack.append(_Node(global_name=str(arg).replace("\n", " ")))
        elif name == "STACK_GLOBAL":
            stack.append(_Node(global_name=f"{popped[0].text} {popped[1].text}"))
        elif name in _CONTAINER_FILLERS:
            target, items = popped[0], popped[1:]
            if target.embedded:
                raise PickleBoundsError(f"byte {pos} changes an object that is already inside another one")
            target.items += len(items)
            if target.items > limits.max_container_items:
                raise PickleBoundsError(f"a container with more than {limits.max_container_items} items")
            target.depth = max([target.depth, *(_embed(item) + 1 for item in items)])
            _check_depth(target, limits, pos)
            target.elements += sum(item.elements for item in items)
            _check_elements(target, limits, pos)
            stack.append(target)
        elif op.stack_after:
            called = arg if name == "INST" else popped[0].global_name if popped else None
            if (name == "REDUCE" and called == "numpy ndarray") or (name in _INSTANTIATE and called in _ALLOCATING_CLASSES):
                raise PickleBoundsError(f"byte {pos} builds a numpy object from sizes in the file")
            if len(popped) > limits.max_container_items:
                raise PickleBoundsError(f"a container with more than {limits.max_container_items} items")
            node = _Node(depth=max((_embed(item) + 1 for item in popped), default=0),
                         text=arg if isinstance(arg, str) and len(arg) < 256 else None,
                         elements=_own_elements(arg) + sum(item.elements for item in popped))
            _check_depth(node, limits, pos)
            _check_elements(node, limits, pos)
            stack.append(node)


def _top(stack: list, pos: int) -> _Node:
    if not stack or stack[-1] is _MARK:
        raise PickleBoundsError(f"byte {pos} reads an empty stack")
    return stack[-1]


def _pop(stack: list, before: list, pos: int) -> list[_Node]:
    """Pop what an opcode consumes (``pickletools`` describes it), items only, in stack order."""
    taken: list[_Node] = []
    for kind in reversed(before):
        if kind is pickletools.stackslice:
            while stack and stack[-1] is not _MARK:
                taken.append(stack.pop())
        elif kind is pickletools.markobject:
            if not stack or stack.pop() is not _MARK:
                raise PickleBoundsError(f"byte {pos} expects a mark on the stack")
        else:
            taken.append(_top(stack, pos))
            stack.pop()
    taken.reverse()
    return taken


def _embed(node: _Node) -> int:
    node.embedded = True
    return node.depth


def _check_depth(node: _Node, limits: Limits, pos: int) -> None:
    if node.depth > limits.max_depth:
        raise PickleBoundsError(f"objects nested more than {limits.max_depth} deep (at byte {pos})")


def _own_elements(arg: object) -> int:
    """A string or bytes value counts as the 8-byte numbers its size would hold: ``np.asarray`` of a list
    repeating one long string allocates the string's size for every repeat."""
    return 1 + len(arg) // 8 if isinstance(arg, (str, bytes, bytearray)) else 1


def _check_elements(node: _Node, limits: Limits, pos: int) -> None:
    if node.elements > limits.max_elements:
        raise PickleBoundsError(f"a value that expands to more than {limits.max_elements:,} elements (at byte {pos}; "
                                "repeated references to one list count every time, as numpy would copy them)")
