"""The delivery state as Table entities: one codec, derived from the stored dataclasses' own fields.

A stored field names its column once, in its type: ``status: Annotated[str, Column("Status")]``. The rest
follows from the type (``T | None``: the column is absent while the value is None):

* ``str``, ``int``, ``float``, ``bool``, ``datetime``: one property of that type (a datetime read back in UTC);
* a dataclass (a record: a final status, a send, a registration): the record's own columns, each prefixed
  with the column's name (``Column("Event")`` + ``Status``: ``EventStatus``; ``Column()``: no prefix). A record
  is stored when its first required column that is not a time is (its status, its count; a record of a time
  alone: that time); a field it does not store (a send's message id) is taken from the record holding it;
* ``tuple[datetime, str, ...]``: one column per item, named in order (``Column("MessageStatusTime",
  "MessageStatus")``), stored when its first item that is not a time is;
* ``tuple[str, ...]``: one string, absent while empty: ``form="json"`` a JSON list, ``form="words"`` the items
  joined by spaces (items without spaces: keys).

Read back, a required value that is missing reads as the field's default, else as 0001-01-01 (a time), ""
(text), 0 or False. A method marked with :func:`derived` computes columns written for readers of the table
(and its filters) on every write, never read back (a final status, its bounce type, counts). A field without a
:class:`Column` is not stored (an ETag: :func:`decode` takes it from the caller).

Each class's mapping is compiled once, at first use, into flat tuples of (attribute, column) pairs, so a write
costs one attribute read and one test per column, as the hand-written mapping it replaced did (the fold encodes
every entity it writes; ``benchmarks/codec.py`` measures both at par). ``tests/state/test_state_codec.py`` pins
every entity against a golden fixture recorded with that mapping: the layout cannot change by accident.
"""

from __future__ import annotations

import json
import operator
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

EPOCH: Final = datetime(1, 1, 1, tzinfo=UTC)

_DERIVED: Final = "__derived_columns__"
_Method = TypeVar("_Method", bound=Callable[..., Any])
_Record = TypeVar("_Record")


class Column:
    """Where a field is stored: its column (a record's: the prefix of its columns; a tuple's: one per item)."""

    __slots__ = ("form", "names")

    def __init__(self, *names: str, form: Literal["json", "words"] | None = None) -> None:
        self.names = names
        self.form = form


def derived(*names: str) -> Callable[[_Method], _Method]:
    """Mark a method whose value is written under *names* (one name: the value; several: a tuple, one item
    each; None, or an item None: not written). Derived columns are for readers of the table, never read back."""

    def mark(method: _Method) -> _Method:
        setattr(method, _DERIVED, names)
        return method

    return mark


def encode(record: Any, **keys: Any) -> dict[str, Any]:
    """*record* as an entity: *keys* (``PartitionKey``, ``RowKey``, ...) and the record's columns."""
    entity = dict(keys)
    plan = _ENTITIES.get(type(record)) or _entity_plan(type(record))
    _write(plan, record, entity)
    return entity


def decode(cls: type[_Record], entity: Mapping[str, Any], **given: Any) -> _Record:
    """An entity as a *cls*; *given*: the fields *cls* does not store (an ETag)."""
    record: _Record = _read(_ENTITIES.get(cls) or _entity_plan(cls), entity, given)
    return record


def columns(cls: type) -> tuple[str, ...]:
    """Every column a *cls* entity may hold besides the keys given to :func:`encode` (stored, then derived)."""
    return _columns(_plan(cls, ""))


def utc(value: Any) -> datetime | None:
    """A stored time (a datetime, or ISO 8601 text) in UTC; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


# --------------------------------------------------------------------------- compiled mappings

#: How a stored value is read back.
_Read = Callable[[Any], Any]
_READS: Final[dict[type, _Read]] = {str: str, int: int, float: float, bool: bool, datetime: utc}
_ZEROS: Final[dict[type, Any]] = {str: "", int: 0, float: 0.0, bool: False, datetime: EPOCH}


def _words(items: tuple[str, ...]) -> str:
    return " ".join(items)


def _json(items: tuple[str, ...]) -> str:
    return json.dumps(list(items))


def _from_words(text: Any) -> tuple[str, ...]:
    return tuple(str(text).split())


def _from_json(text: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in json.loads(text))


_FORMS: Final = {"words": (_words, _from_words), "json": (_json, _from_json)}


@dataclass(frozen=True)
class _Plan:
    """One class's columns, under one prefix."""

    cls: type
    #: Every value's column, and their attributes read at once (one call: the write's most frequent step).
    columns: tuple[str, ...]
    values_of: Callable[[Any], tuple[Any, ...]]
    #: Optional text, read back as stored (most columns: one lookup each).
    texts_as_stored: tuple[tuple[str, str], ...]
    #: The other values: (attribute, column, read conversion, value when missing).
    converted: tuple[tuple[str, str, _Read, Any], ...]
    #: Fixed tuples: (attribute, columns, read conversions, values when missing, the column marking it stored).
    groups: tuple[tuple[str, tuple[str, ...], tuple[_Read, ...], tuple[Any, ...], str], ...]
    #: Tuples of text in one column: (attribute, column, write, read).
    texts: tuple[tuple[str, str, Callable[[Any], str], Callable[[Any], tuple[str, ...]]], ...]
    #: Records stored in this one's entity: (attribute, their plan).
    records: tuple[tuple[str, _Plan], ...]
    #: Derived columns: (method, its column), (method, its columns).
    derived_one: tuple[tuple[Callable[[Any], Any], str], ...]
    derived_many: tuple[tuple[Callable[[Any], Any], tuple[str, ...]], ...]
    #: Fields not stored (taken from the record holding this one, or from the caller).
    unstored: tuple[str, ...]
    #: The column whose presence says this record is stored (when held by another).
    marker: str


_PLANS: Final[dict[tuple[type, str], _Plan]] = {}
#: The plans of whole entities (no prefix), by class alone: looked up on every encode and decode.
_ENTITIES: Final[dict[type, _Plan]] = {}


def _entity_plan(cls: type) -> _Plan:
    plan = _ENTITIES[cls] = _plan(cls, "")
    return plan


def _columns(plan: _Plan) -> tuple[str, ...]:
    names = list(plan.columns)
    for _, group, *_ in plan.groups:
        names += group
    names += [column for _, column, _, _ in plan.texts]
    for _, inner in plan.records:
        names += _columns(inner)
    names += [column for _, column in plan.derived_one]
    for _, many in plan.derived_many:
        names += many
    return tuple(names)


def _write(plan: _Plan, record: Any, entity: dict[str, Any]) -> None:
    for column, value in zip(plan.columns, plan.values_of(record)):  # noqa: B905  (as many)
        if value is not None:
            entity[column] = value
    for attribute, columns, _, _, _ in plan.groups:
        value = getattr(record, attribute)
        if value is not None:
            for column, item in zip(columns, value):  # noqa: B905  (lengths checked by _compile)
                if item is not None:
                    entity[column] = item
    for attribute, column, dump, _ in plan.texts:
        value = getattr(record, attribute)
        if value:
            entity[column] = dump(value)
    for attribute, inner in plan.records:
        value = getattr(record, attribute)
        if value is not None:
            _write(inner, value, entity)
    for method, column in plan.derived_one:
        value = method(record)
        if value is not None:
            entity[column] = value
    for method, columns in plan.derived_many:
        value = method(record)
        if value is not None:
            for column, item in zip(columns, value):  # noqa: B905  (lengths: the method's declared type)
                if item is not None:
                    entity[column] = item


def _read(plan: _Plan, entity: Mapping[str, Any], given: Mapping[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for name in plan.unstored:
        if name in given:
            values[name] = given[name]
    get = entity.get
    for attribute, column in plan.texts_as_stored:
        values[attribute] = get(column)
    for attribute, column, read, missing in plan.converted:
        value = get(column)
        values[attribute] = missing if value is None else read(value)
    for attribute, columns, reads, missings, marker in plan.groups:
        if get(marker) is None:
            values[attribute] = None
            continue
        items = []
        for column, read, missing in zip(columns, reads, missings, strict=True):
            value = get(column)
            items.append(missing if value is None else read(value))
        values[attribute] = tuple(items)
    for attribute, column, _, load in plan.texts:
        value = get(column)
        values[attribute] = load(value) if value else ()
    for attribute, inner in plan.records:
        values[attribute] = _read(inner, entity, values) if get(inner.marker) is not None else None
    return plan.cls(**values)


def _plan(cls: type, prefix: str) -> _Plan:
    plan = _PLANS.get((cls, prefix))
    if plan is None:
        plan = _PLANS[cls, prefix] = _compile(cls, prefix)  # racing threads compile the same plan: harmless
    return plan


def _compile(cls: type, prefix: str) -> _Plan:
    """*cls*'s columns under *prefix*, read from its fields' types (the module docstring's rules)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    scalars: list[tuple[str, str, _Read, Any]] = []  # (attribute, column, read, missing)
    groups: list[tuple[str, tuple[str, ...], tuple[_Read, ...], tuple[Any, ...], str]] = []
    texts: list[tuple[str, str, Callable[[Any], str], Callable[[Any], tuple[str, ...]]]] = []
    records: list[tuple[str, _Plan]] = []
    unstored: list[str] = []
    required: list[tuple[bool, str]] = []  # (is a time, column) of the required scalars, in order
    for item in fields(cls):
        hint = hints[item.name]
        column = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Column)), None)
        if column is None:
            unstored.append(item.name)
            continue
        kind, optional = _unwrap(hint.__origin__)
        names = tuple(prefix + name for name in column.names)
        if column.form is not None:
            texts.append((item.name, names[0], *_FORMS[column.form]))
        elif is_dataclass(kind):
            records.append((item.name, _plan(kind, names[0] if names else prefix)))  # type: ignore[arg-type]
        elif typing.get_origin(kind) is tuple:
            kinds = typing.get_args(kind)
            if len(kinds) != len(names):
                raise TypeError(f"{cls.__name__}.{item.name}: one column per item of {kind}")
            marker = next((n for n, k in zip(names, kinds, strict=True) if k is not datetime), names[0])
            groups.append((item.name, names, tuple(_READS[k] for k in kinds), tuple(_ZEROS[k] for k in kinds), marker))
        else:
            default = _ZEROS[kind] if item.default is MISSING else item.default
            scalars.append((item.name, names[0], _READS[kind], None if optional else default))
            if not optional and item.default is MISSING:
                required.append((kind is datetime, names[0]))
    derived = [(f, getattr(f, _DERIVED)) for f in vars(cls).values() if callable(f) and hasattr(f, _DERIVED)]
    return _Plan(
        cls=cls,
        columns=tuple(column for _, column, _, _ in scalars),
        values_of=_values_of(tuple(attribute for attribute, _, _, _ in scalars)),
        texts_as_stored=tuple((a, c) for a, c, read, missing in scalars if read is str and missing is None),
        converted=tuple(scalar for scalar in scalars if scalar[2] is not str or scalar[3] is not None),
        groups=tuple(groups),
        texts=tuple(texts),
        records=tuple(records),
        derived_one=tuple((method, names[0]) for method, names in derived if len(names) == 1),
        derived_many=tuple((method, names) for method, names in derived if len(names) > 1),
        unstored=tuple(unstored),
        marker=next((name for is_time, name in required if not is_time), required[0][1] if required else ""),
    )


def _values_of(attributes: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function reading *attributes* of a record, as a tuple (however many)."""
    if not attributes:
        return lambda record: ()
    if len(attributes) == 1:
        one = operator.attrgetter(attributes[0])
        return lambda record: (one(record),)
    return operator.attrgetter(*attributes)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the stored type, whether it may be None) of ``T`` or ``T | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
        if len(kinds) == 1:
            return kinds[0], True
        raise TypeError(f"one stored type, not {hint}")
    return hint, False
