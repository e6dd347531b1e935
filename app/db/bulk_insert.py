"""Executemany INSERTs of thousands of rows: the statement and values ``insert()`` makes, built by column.

``session.execute(insert(table), rows)`` works out each column's Python
default and bind processor again for every row, then builds the row's
parameters (``construct_params``): on a bulk write of templates, more time
than the database's own work. Here the statement is compiled once per
call, each column's processor is looked up once and run over the column
(once for a value every row shares), and the rows go to the driver's
``executemany`` as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session


def insert_many(
    session: Session,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
) -> None:
    """``session.execute(insert(table), rows)`` without RETURNING, in the session's transaction.

    The rows are given by column: ``columns`` holds each named column's
    value for every row, ``constants`` the value of a column that is the
    same in every row. A column named in neither gets its Python default,
    a callable one called once per row as ``insert()`` does; one without is
    left to the database (the autoincrement key, NULL).
    """
    constants = constants or {}
    counts = {len(values) for values in columns.values()}
    if len(counts) != 1:
        raise ValueError(f"insert_many needs columns of one length, got lengths {sorted(counts)}")
    count = counts.pop()
    if not count:
        return
    connection = session.connection()
    dialect = connection.dialect
    named = [c for c in table.columns if c.key in columns or c.key in constants or c.default is not None]
    compiled = insert(table).compile(dialect=dialect, column_keys=[c.key for c in named])
    keys = list(compiled.positiontup or ()) if compiled.positional else [c.key for c in named]
    bound = [_bound_values(table.c[key], columns, constants, count, dialect) for key in keys]
    rows: list[Any] = list(zip(*bound, strict=True))
    if not compiled.positional:
        rows = [dict(zip(keys, row, strict=True)) for row in rows]
    connection.exec_driver_sql(compiled.string, rows)  # a list of rows: the driver's executemany


def _bound_values(
    column: Column[Any],
    columns: Mapping[str, Sequence[Any]],
    constants: Mapping[str, Any],
    count: int,
    dialect: Dialect,
) -> Sequence[Any]:
    """The column's value in every row as the driver receives it: after the type's bind processor."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if column.key in constants:
        value = constants[column.key]
        return [value if process is None else process(value)] * count
    values = columns[column.key] if column.key in columns else _defaults(column, count)
    if process is None:
        return values
    null = process(None)  # once: a JSON column's 'null', a column of absent crops
    return [null if value is None else process(value) for value in values]


def _defaults(column: Column[Any], count: int) -> list[Any]:
    default = column.default
    assert default is not None, "insert_many binds only the columns it is given or that have a default"
    if default.is_scalar:
        return [default.arg] * count  # type: ignore[attr-defined]
    if default.is_callable:
        make = default.arg  # type: ignore[attr-defined]
        return [make(None) for _ in range(count)]  # the tables' defaults read no execution context
    raise ValueError(f"{column}'s default is SQL, which insert_many does not render")
