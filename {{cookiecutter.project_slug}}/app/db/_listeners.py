"""The ORM listeners that make the mixins and column normalisers work, installed by the layer.

SQLAlchemy's asyncio extension runs the ORM on a plain `Session` in a greenlet, so these
are ordinary synchronous listeners on mappers and on the sync session class:

- `before_insert` / `before_update` on every `Base` model: each column named in
  `info={NORMALIZE: function}` is passed through its function (str -> str);
- `before_update` on every `TimestampMixin` model: moves `updated_at` forward;
- `do_orm_execute` on the sessions the layer makes: hides `SoftDeleteMixin` rows from
  SELECTs unless the statement runs with `execution_options(**INCLUDE_DELETED)`. Until a
  `SoftDeleteMixin` model is mapped, statements are left as they are, so an app without
  soft deletion pays nothing for the filter.

`normalized()` applies the same normalisers to the values of a Core `insert()` or
`update()`, which no ORM listener sees.

The mapper listeners are registered when this module is imported, before any model is
mapped; the session listener by `install_session_listeners()`, which
`create_session_factory()` calls for the session class it uses.
"""

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Executable, event, inspect
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, with_loader_criteria

from ._base import Base
from ._mixins import INCLUDE_DELETED, SoftDeleteMixin, TimestampMixin, utc_now

__all__ = ["NORMALIZE", "LayerSession", "install_session_listeners", "normalized"]

# The key in a column's `info` that names its normaliser, a function str -> str.
NORMALIZE = "normalize"

(_INCLUDE_DELETED_OPTION,) = INCLUDE_DELETED

# The SoftDeleteMixin models mapped so far; the filter has nothing to do while it is empty.
_soft_delete_models: set[type] = set()


class LayerSession(Session):
    """The sync session behind the layer's `AsyncSession`s, so that its listeners reach
    only the layer's sessions and not every `Session` in the process."""


def install_session_listeners(session_class: type[Session]) -> None:
    """Hide soft-deleted rows in the sessions of `session_class`; calling it again is a no-op."""
    if not event.contains(session_class, "do_orm_execute", _hide_soft_deleted):
        event.listen(session_class, "do_orm_execute", _hide_soft_deleted)


def normalized(model: type[Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` as the ORM would store them in `model`'s table: each string of a column
    named in `info={NORMALIZE: function}` passed through its function.

    The ORM's listeners normalise the rows it flushes; a Core `insert()` or `update()`
    never reaches them, so its values go through this first. `values` is keyed by
    column, as such a statement takes them; the rest pass unchanged.
    """
    result = dict(values)
    for key, normalize in _normalizers_of(inspect(model))[1]:
        value = result.get(key)
        if isinstance(value, str):
            result[key] = normalize(value)
    return result


def _normalize(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    normalizers = _normalizers_of(mapper)[0]
    if not normalizers:
        return
    loaded = inspect(target).dict
    for key, normalize in normalizers:
        value = loaded.get(key)
        if isinstance(value, str):
            setattr(target, key, normalize(value))


_Normalizers = tuple[tuple[str, Callable[[str], str]], ...]


def _normalizers_of(mapper: Mapper[Any]) -> tuple[_Normalizers, _Normalizers]:
    """The normalised columns of `mapper` as (key, function) pairs, keyed by attribute and
    by column; worked out once per mapper, whose columns are fixed once it is configured
    (before its first flush or `inspect()`)."""
    found = _normalizers.get(mapper)
    if found is None:
        columns = [
            (attribute.key, attribute.columns[0])
            for attribute in mapper.column_attrs
            if NORMALIZE in attribute.columns[0].info
        ]
        found = _normalizers[mapper] = (
            tuple((key, column.info[NORMALIZE]) for key, column in columns),
            tuple((column.key, column.info[NORMALIZE]) for _, column in columns),
        )
    return found


# Each mapper's normalisers, filled by _normalizers_of.
_normalizers: dict[Mapper[Any], tuple[_Normalizers, _Normalizers]] = {}


def _touch(mapper: Mapper[Any], connection: Connection, target: TimestampMixin) -> None:
    state = inspect(target)
    # before_update also fires for rows whose only change is to a collection; those
    # write nothing, and an explicitly assigned updated_at wins.
    session = state.session
    changed = session is not None and session.is_modified(target, include_collections=False)
    if changed and not state.attrs.updated_at.history.has_changes():
        target.updated_at = utc_now()


def _remember_soft_delete_model(mapper: Mapper[Any], class_: type) -> None:
    _soft_delete_models.add(class_)


def _hide_soft_deleted(state: ORMExecuteState) -> None:
    if (
        not _soft_delete_models
        or not state.is_select
        # Column and relationship loads inherit the criteria from the statement that
        # loaded the parent, along with its include_deleted choice.
        or state.is_column_load
        or state.is_relationship_load
        or state.execution_options.get(_INCLUDE_DELETED_OPTION, False)
    ):
        return
    statement = state.statement
    filtered = _filtered.get(statement)
    if filtered is None:
        filtered = _filtered[statement] = statement.options(_NOT_DELETED)
    state.statement = filtered


_NOT_DELETED = with_loader_criteria(
    SoftDeleteMixin, lambda cls: cls.deleted_at.is_(None), include_aliases=True
)
# Each statement with the filter added, for as long as the statement itself lives.
# Adding it makes a new statement, whose cache key SQLAlchemy then computes from
# scratch: about 30 microseconds, on each execution of a statement that is built once
# and run many times (get_by_pk's, say), where a statement seen before costs a lookup.
_filtered: weakref.WeakKeyDictionary[Executable, Executable] = weakref.WeakKeyDictionary()

# propagate=True reaches every subclass, including models declared later. The
# normaliser must run first, so that a value that normalises back to what is stored is
# no change that moves updated_at; insert=True puts it ahead of the mixin's listener,
# whichever class a model names first.
event.listen(Base, "before_insert", _normalize, propagate=True)
event.listen(Base, "before_update", _normalize, propagate=True, insert=True)
event.listen(TimestampMixin, "before_update", _touch, propagate=True)
event.listen(
    SoftDeleteMixin, "after_mapper_constructed", _remember_soft_delete_model, propagate=True
)
install_session_listeners(LayerSession)
