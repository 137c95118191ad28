"""A small stand-in for the parts of :mod:`dataclasses` the runtime uses.

Why: ``import dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``),
about 6 ms, and every ``@dataclass`` then compiles generated code, ~0.3 ms per class.  The
runtime is started several times per container and defines a dozen plan classes on the create
path, so that is ~10 ms of a ~70 ms ``create``.  This module supports exactly what the code
uses — ``@dataclass`` / ``@dataclass(frozen=True)`` with annotated fields, defaults,
``field(default_factory=...)``, ``replace`` and ``fields`` — with the same semantics (ordered
``__init__`` parameters, ``__eq__`` over the fields, hashing of frozen records, read-only
frozen instances) and no code generation.
"""

from __future__ import annotations

# Annotations only (postponed): `typing`/`collections.abc` stay unimported at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Field:
    __slots__ = ("default", "factory")

    def __init__(self, default: Any, factory: Callable[[], Any] | None) -> None:
        self.default = default
        self.factory = factory


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    """A field default: a value, or a factory called for every new instance."""
    return _Field(default, default_factory)


def fields(obj_or_cls: Any) -> tuple[str, ...]:
    """The field names, in declaration order (base classes first)."""
    return obj_or_cls.__record_fields__


def replace(obj: T, **changes: Any) -> T:
    """A copy of ``obj`` with some fields changed (like dataclasses.replace)."""
    values = {name: getattr(obj, name) for name in obj.__record_fields__}  # type: ignore[attr-defined]
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _build(cls: type, frozen: bool) -> type:
    names: list[str] = []
    defaults: dict[str, _Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for name in getattr(base, "__record_fields__", ()):
            if name not in names:
                names.append(name)
            defaults.update({k: v for k, v in base.__record_defaults__.items() if k == name})
    # (not inspect.get_annotations: importing inspect is what this module avoids)
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if str(annotation).startswith("ClassVar"):
            continue
        if name not in names:
            names.append(name)
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field):
            defaults[name] = value
        elif value is not _MISSING:
            defaults[name] = _Field(value, None)
        # Class attributes named like fields would shadow nothing on instances but confuse
        # readers of the class; drop them as dataclasses does for field() objects.
        if isinstance(value, _Field):
            delattr(cls, name)
    seen_default = False
    for name in names:
        if name in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default field {name!r} follows a default field in {cls.__name__}")
    order = tuple(names)
    setter = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(order):
            raise TypeError(f"{cls.__name__}() takes {len(order)} positional arguments")
        for name, value in zip(order, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for {name!r}")
            kwargs[name] = value
        for name in order:
            if name in kwargs:
                setter(self, name, kwargs.pop(name))
                continue
            d = defaults.get(name)
            if d is None:
                raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
            setter(self, name, d.factory() if d.factory is not None else d.default)
        if kwargs:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}")
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def __eq__(self: Any, other: Any) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in order)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in order)
        return f"{cls.__qualname__}({inner})"

    cls.__init__ = __init__  # type: ignore[misc]
    cls.__eq__ = __eq__  # type: ignore[method-assign,assignment]
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = __repr__  # type: ignore[method-assign]
    cls.__record_fields__ = order  # type: ignore[attr-defined]
    cls.__record_defaults__ = defaults  # type: ignore[attr-defined]
    cls.__match_args__ = order  # type: ignore[attr-defined]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign,assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign,assignment]
        cls.__hash__ = lambda self: hash(tuple(getattr(self, n) for n in order))  # type: ignore[method-assign,assignment]
    else:
        cls.__hash__ = None  # type: ignore[assignment]
    return cls


def dataclass(cls: type | None = None, /, *, frozen: bool = False) -> Any:
    """``@dataclass`` or ``@dataclass(frozen=True)``."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)
