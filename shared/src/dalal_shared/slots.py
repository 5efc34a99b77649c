"""`slot_init`: a faster `__init__` for frozen, slotted dataclasses made by the thousand (the
accounting kernel's and the backtester's records per fill and decision)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

_Frozen = TypeVar("_Frozen", bound=type)


def slot_init(cls: _Frozen) -> _Frozen:
    """Give a frozen, slotted dataclass an `__init__` that sets each slot through its
    descriptor: the one dataclasses writes goes through `object.__setattr__` by name, twice
    as slow, and the kernel and the backtester make a few of these records per fill. The same
    signature (fields in order, their defaults), `__post_init__` still called; equality, hash,
    repr and immutability are the dataclass's."""
    params: list[str] = []
    body: list[str] = []
    scope: dict[str, Any] = {}
    for f in fields(cls):
        if not f.init or f.kw_only or f.default_factory is not MISSING:
            raise TypeError(f"slot_init: {cls.__name__}.{f.name} is not a plain field")
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            scope[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body), scope)  # noqa: S102
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {f.name: f.type for f in fields(cls)} | {"return": None}
    cls.__init__ = init  # type: ignore[misc]
    return cls
