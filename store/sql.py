"""SQL both backends build alike (``store.sqlite``, ``store.postgres``)."""

from __future__ import annotations


def filtered(select: str, mark: str, **equal_to: str | None) -> tuple[str, list[str]]:
    """``select`` with a ``WHERE`` of ``column = <mark>`` for each column given a value
    (``None``: no filter on it), and the values in that order; ``mark`` is the backend's
    placeholder (``?`` for SQLite, ``%s`` for psycopg). Column names come from the code,
    never from input."""
    given = {column: value for column, value in equal_to.items() if value is not None}
    where = " AND ".join(f"{column} = {mark}" for column in given)
    return (f"{select} WHERE {where}" if where else select), list(given.values())
