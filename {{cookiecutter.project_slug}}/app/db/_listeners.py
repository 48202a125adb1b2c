"""The ORM listeners that make the mixins and column normalisers work, installed by the layer.

SQLAlchemy's asyncio extension runs the ORM on a plain `Session` in a greenlet, so these
are ordinary synchronous listeners on mappers and on the sync session class:

- `before_insert` / `before_update` on every `Base` model: each column named in
  `info={NORMALIZE: function}` is passed through its function (str -> str);
- `before_insert` on every `CreatedAtMixin` and `TimestampMixin` model: stamps the
  timestamps left unset with one time;
- `before_update` on every `TimestampMixin` model: moves `updated_at` forward;
- `do_orm_execute` on the sessions the layer makes: hides `SoftDeleteMixin` rows from
  SELECTs unless the statement runs with `execution_options(**INCLUDE_DELETED)`. Until a
  `SoftDeleteMixin` model is mapped, statements are left as they are, so an app without
  soft deletion pays nothing for the filter.

The mapper listeners are registered when this module is imported, before any model is
mapped; the session listener by `install_session_listeners()`, which
`create_session_factory()` calls for the session class it uses.
"""

import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Executable, event, inspect
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, with_loader_criteria

from ._base import Base
from ._mixins import INCLUDE_DELETED, CreatedAtMixin, SoftDeleteMixin, TimestampMixin, utc_now

__all__ = ["NORMALIZE", "LayerSession", "install_session_listeners"]

# The key in a column's `info` that names its normaliser, a function str -> str.
NORMALIZE = "normalize"

(_INCLUDE_DELETED_OPTION,) = INCLUDE_DELETED

# The SoftDeleteMixin models mapped so far; the filter has nothing to do while it is empty.
_soft_delete_models: set[type] = set()


class LayerSession(Session):
    """The sync session behind the layer's `AsyncSession`s, so that its listeners reach
    only the layer's sessions and not every `Session` in the process."""


def install_session_listeners(session_class: type[Session]) -> None:
    """Hide soft-deleted rows in the sessions of `session_class`; a no-op where it, or a
    class it derives from, has the listener already (a listener on a class reaches its
    subclasses' sessions too)."""
    listens = (
        event.contains(cls, "do_orm_execute", _hide_soft_deleted)
        for cls in session_class.__mro__
        if issubclass(cls, Session)
    )
    if not any(listens):
        event.listen(session_class, "do_orm_execute", _hide_soft_deleted)


def _normalize(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    normalizers = _normalizers_of(mapper)
    if not normalizers:
        return
    loaded = inspect(target).dict
    for key, normalize in normalizers:
        value = loaded.get(key)
        if isinstance(value, str):
            setattr(target, key, normalize(value))


_Normalizers = tuple[tuple[str, Callable[[str], str]], ...]


def _normalizers_of(mapper: Mapper[Any]) -> _Normalizers:
    """The normalised attributes of `mapper` as (key, function) pairs; worked out once per
    mapper, whose columns are fixed once it is configured (before its first flush)."""
    found = _normalizers.get(mapper)
    if found is None:
        found = _normalizers[mapper] = tuple(
            (attribute.key, attribute.columns[0].info[NORMALIZE])
            for attribute in mapper.column_attrs
            if NORMALIZE in attribute.columns[0].info
        )
    return found


# Each mapper's normalisers, filled by _normalizers_of.
_normalizers: dict[Mapper[Any], _Normalizers] = {}


def _stamp(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    # The columns' defaults would stamp these too, but the ORM does not count a value
    # that Core fills in: seeing columns with a server default missing from the
    # parameters, it asks for them back (eager_defaults="auto"), building a new INSERT
    # statement on every flush. Set here, they are parameters like any other, and a row's
    # created_at and updated_at start out equal.
    now = utc_now()
    if target.created_at is None:
        target.created_at = now
    if isinstance(target, TimestampMixin) and target.updated_at is None:
        target.updated_at = now


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


# The mixin's own rule (`is_deleted`), negated for every soft-deleting model in a statement.
_NOT_DELETED = with_loader_criteria(
    SoftDeleteMixin, lambda cls: ~cls.is_deleted, include_aliases=True
)
# Each statement with the filter added, for as long as the statement itself lives.
# Adding it makes a new statement, whose cache key SQLAlchemy would compute from scratch
# on every execution of a statement that is built once and run many times (get_by_pk's,
# say); kept here, a statement seen before costs a dictionary lookup.
_filtered: weakref.WeakKeyDictionary[Executable, Executable] = weakref.WeakKeyDictionary()

# propagate=True reaches every subclass, including models declared later. The
# normaliser must run first, so that a value that normalises back to what is stored is
# no change that moves updated_at; insert=True puts it ahead of the mixin's listener,
# whichever class a model names first.
event.listen(Base, "before_insert", _normalize, propagate=True)
event.listen(Base, "before_update", _normalize, propagate=True, insert=True)
event.listen(CreatedAtMixin, "before_insert", _stamp, propagate=True)
event.listen(TimestampMixin, "before_insert", _stamp, propagate=True)
event.listen(TimestampMixin, "before_update", _touch, propagate=True)
event.listen(
    SoftDeleteMixin, "after_mapper_constructed", _remember_soft_delete_model, propagate=True
)
install_session_listeners(LayerSession)
