"""msgspec Structs derived, at import, from the contract's pydantic models.

The pydantic models are the one definition of every message. :func:`struct_for` reads a
model's fields (types, bounds, lengths, patterns, defaults, aliases) and builds the msgspec
Struct that decodes the same JSON, so a fast decoder never needs a second, hand-kept copy
of the schema. A constraint it does not know how to carry over is an error at import
(:class:`Underivable`), never a looser decoder.

Where the two libraries differ, the Struct is the stricter one, never the looser:

- msgspec is strict where the models are lax (``"1"`` for an int, ``1.0`` for an int):
  such payloads are refused here and left to pydantic, whose verdict is final
  (``contract.fastcodec``).
- ``FiniteFloat``'s validator becomes bounds of ±``sys.float_info.max``: JSON has no
  infinities, but an overflowing number (``1e999``) reads as one, and the bounds refuse it.
- A pattern's final ``$`` becomes ``\\Z``: pydantic's regex engine (Rust's) reads ``$`` as
  the very end, Python's ``re`` (msgspec's) also matches before a final newline.

``tests/contract/test_fastschema.py`` checks, with generated payloads for every message
model of the contract, that a derived Struct never accepts what its model refuses and
reads the same values when it accepts.
"""

import enum
from dataclasses import dataclass
import re
import sys
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from contract.messages import FiniteFloat

__all__ = ["Underivable", "pattern_paths", "python_pattern", "struct_for"]

_FINITE_CHECK = get_args(FiniteFloat)[1].func  # the models' finite-number validator
_MAX = sys.float_info.max


class Underivable(TypeError):
    """A model uses a type or constraint that has no faithful msgspec form here."""


@dataclass(frozen=True)
class _Options:
    raw: frozenset[tuple[type[BaseModel], str]]
    deferred: frozenset[str]


def struct_for(model: type[BaseModel], *, raw: frozenset[tuple[type[BaseModel], str]] = frozenset(),
               deferred: frozenset[str] = frozenset()) -> type[msgspec.Struct]:
    """The msgspec Struct of ``model``. ``raw``: ``(model, field)`` pairs whose value is kept
    as the JSON it arrived as (``msgspec.Raw``, in place of each model or mapping in the
    field's type), for the caller to check later; their length bounds still apply.
    ``deferred``: patterns (as the models write them) left for the caller to check, once
    per distinct value, at the fields :func:`pattern_paths` names."""
    options = _Options(raw, frozenset(python_pattern(p) for p in deferred))
    key = (model, options)
    struct = _cache.get(key)
    if struct is None:
        struct = _cache[key] = _derive(model, options)
    return struct


_cache: dict[tuple[type[BaseModel], _Options], type[msgspec.Struct]] = {}


def pattern_paths(model: type[BaseModel], pattern: str) -> list[tuple[str, ...]]:
    """Attribute paths, through nested models (and sequences or optionals of them), to the
    string fields of ``model`` constrained by ``pattern``."""
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        if _pattern_of(info.metadata) == pattern:
            paths.append((name,))
        for inner in _models_in(info.annotation):
            paths.extend((name, *rest) for rest in pattern_paths(inner, pattern))
    return paths


def _pattern_of(metadata: list[Any]) -> str | None:
    for item in metadata:
        if isinstance(item, StringConstraints) and item.pattern is not None:
            return str(item.pattern)
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) is dict:
        return []  # a model as a mapping's value has no attribute path
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _derive(model: type[BaseModel], options: _Options) -> type[msgspec.Struct]:
    if model.model_config.get("extra") != "forbid":
        raise Underivable(f"{model.__name__}: only models that forbid extra fields are derived")
    decorators = model.__pydantic_decorators__
    if any((decorators.validators, decorators.field_validators, decorators.root_validators,
            decorators.model_validators, decorators.field_serializers, decorators.model_serializers)):
        raise Underivable(f"{model.__name__}: a validator or serializer of its own has no msgspec form")
    fields = []
    for name, info in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        if info.discriminator is not None or info.validation_alias not in (None, info.alias):
            raise Underivable(f"{where}: a discriminator or a validation alias of its own is not carried over")
        annotation = _convert(info.annotation, info.metadata, raw=(model, name) in options.raw, options=options,
                              where=where)
        if info.default_factory is not None:
            default: Any = msgspec.field(default_factory=info.default_factory, name=info.alias)
        elif info.default is PydanticUndefined:
            default = msgspec.field(name=info.alias)
        else:
            default = msgspec.field(default=info.default, name=info.alias)
        fields.append((name, annotation, default))
    return msgspec.defstruct(f"Fast{model.__name__}", fields, kw_only=True, forbid_unknown_fields=True,
                             frozen=True, gc=False, module=__name__)


def _convert(annotation: Any, metadata: list[Any], *, raw: bool, options: _Options, where: str) -> Any:
    """``annotation`` with its constraints (``metadata``) as msgspec understands them."""
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _convert(inner, [*extra, *metadata], raw=raw, options=options, where=where)
    meta = _meta(metadata, where)
    if meta.get("pattern") in options.deferred:
        del meta["pattern"]
    if meta and get_origin(annotation) in (Union, types.UnionType):
        # Field(max_length=64) on ``str | None`` constrains the str: msgspec wants it there.
        return Union[tuple(a if a is type(None) else _convert(a, metadata, raw=raw, options=options, where=where)
                           for a in get_args(annotation))]
    tp = _convert_type(annotation, raw=raw, options=options, where=where)
    return Annotated[tp, msgspec.Meta(**meta)] if meta else tp


def _convert_type(annotation: Any, *, raw: bool, options: _Options, where: str) -> Any:
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return msgspec.Raw if raw else struct_for(annotation, raw=options.raw, deferred=options.deferred)
    if raw and origin is dict:
        return msgspec.Raw
    if annotation in (int, float, str, bool, type(None)) or annotation is Any:
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return annotation
    if origin is Literal:
        return annotation
    convert = lambda a: _convert(a, [], raw=raw, options=options, where=where)  # noqa: E731
    if origin in (Union, types.UnionType):
        return Union[tuple(convert(a) for a in args)]  # noqa: UP007 - built from a tuple
    if origin is dict:
        return dict[convert(args[0]), convert(args[1])]  # type: ignore[misc]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return tuple[convert(args[0]), ...]  # type: ignore[misc]
    if origin is list:
        return list[convert(args[0])]  # type: ignore[misc]
    raise Underivable(f"{where}: no msgspec form for {annotation!r}")


_BOUNDS = {annotated_types.Ge: "ge", annotated_types.Le: "le", annotated_types.Gt: "gt", annotated_types.Lt: "lt",
           annotated_types.MinLen: "min_length", annotated_types.MaxLen: "max_length"}


def _meta(metadata: list[Any], where: str) -> dict[str, Any]:
    """msgspec.Meta arguments for pydantic's constraints, the tightest of each kind."""
    meta: dict[str, Any] = {}

    def tighten(kind: str, value: Any) -> None:
        old = meta.get(kind)
        if old is not None:
            value = max(old, value) if kind in ("ge", "gt", "min_length") else min(old, value)
        meta[kind] = value

    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[str, Field(max_length=64)]
            for kind, value in _meta(item.metadata, where).items():
                if kind == "pattern":
                    meta[kind] = value
                else:
                    tighten(kind, value)
        elif type(item) in _BOUNDS:
            kind = _BOUNDS[type(item)]
            tighten(kind, getattr(item, kind))
        elif isinstance(item, StringConstraints) or type(item).__name__ == "_PydanticGeneralMetadata":
            meta.update(_string_constraints(item, where))
        elif getattr(item, "func", None) is _FINITE_CHECK:
            tighten("ge", -_MAX)
            tighten("le", _MAX)
        else:
            raise Underivable(f"{where}: no msgspec form for the constraint {item!r}")
    return meta


def _string_constraints(item: Any, where: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    names = item.__dataclass_fields__ if isinstance(item, StringConstraints) else vars(item)
    for attr in names:
        value = getattr(item, attr)
        if value is None:
            continue
        if attr in ("min_length", "max_length"):
            meta[attr] = value
        elif attr == "pattern":
            meta["pattern"] = python_pattern(value if isinstance(value, str) else value.pattern)
        else:
            raise Underivable(f"{where}: no msgspec form for the string constraint {attr}={value!r}")
    return meta


def python_pattern(pattern: str) -> str:
    """A Rust-regex pattern (pydantic's) for Python's re.search (msgspec's), as strict."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    re.compile(pattern)
    return pattern
