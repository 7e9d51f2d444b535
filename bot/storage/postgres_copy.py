"""An import's rows as PostgreSQL binary COPY data, made by the reader processes (``PostgresContactStore.row_packer``).

On two cores the import's writer process was as busy as each reader: for every row it unpickled the values, then
psycopg turned them into COPY data again. A reader makes that data itself instead (psycopg's own binary
formatter, half the cost of the pickling it replaces), and an initial load streams it into the contacts table as
it is. Any other write decodes it back into rows (``CopyRows`` is a sequence of contacts) and goes its usual way.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Final, overload

from psycopg import Copy, Cursor, abc
from psycopg.adapt import Transformer
from psycopg.pq import Format

from metrics.records import Contact

# psycopg's own binary COPY row formatter and parser are not public API (pyproject pins the minor versions they were
# checked on). Should a psycopg move them, imports go on without reader-made rows (``AVAILABLE``).
try:
    from psycopg._copy_base import format_row_binary, parse_row_binary
except ImportError:  # pragma: no cover (the pinned versions have them; tests cover the fallback)
    AVAILABLE = False
else:
    AVAILABLE = True

_WIDTH: Final = len(Contact._fields)
_ID: Final = itemgetter(Contact._fields.index("id"))
# Each row's fields in Contact field order, then the write's ``received_at``.
_TYPES: Final = {
    "tier": "int8",
    "escalated": "bool",
    "resolved": "bool",
    "started_us": "int8",
    "ended_us": "int8",
    "updated_us": "int8",
}
COPY_TYPES: Final = [_TYPES.get(column, "text") for column in Contact._fields]
# The header of binary COPY data (signature, no flags, no extension) and its trailer (PostgreSQL docs, COPY,
# "Binary Format"): the rows of a CopyRows go between them.
HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER: Final = b"\xff\xff"


def _transformer() -> abc.Transformer:
    transformer = Transformer()
    oids = [transformer.adapters.types[name].oid for name in [*COPY_TYPES, "text"]]
    transformer.set_dumper_types(oids, Format.BINARY)
    transformer.set_loader_types(oids, Format.BINARY)
    return transformer


def write_binary_copy(cursor: Cursor[Any], copy: Copy, rows: Iterable[Sequence[Any]], types: Sequence[str]) -> None:
    """Send ``rows`` (each a value of each of ``types``) to ``copy``, a binary ``COPY ... FROM STDIN`` run by
    ``cursor``, as ONE block: header, rows and trailer made in one buffer by psycopg's C row formatter with the
    cursor's dumpers (its connection's client encoding), as ``Copy.write_row`` makes each row, without the Python
    around it (two method calls and a buffer check per row). Row by row where the formatter is missing
    (``AVAILABLE``)."""
    if not AVAILABLE:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
        return
    transformer = Transformer.from_context(cursor)
    registry = cursor.adapters.types
    transformer.set_dumper_types([registry.get_oid(name) for name in types], Format.BINARY)
    data = bytearray(HEADER)
    write = format_row_binary
    for row in rows:
        write(row, transformer, data)
    data += TRAILER
    copy.write(data)


class CopyRows(Sequence[Contact]):
    """Contacts as the rows of binary COPY data (``data``, each row ending at its offset in ``ends``), with the
    ``received_at`` of the write in each, and whether no ``(source, id)`` comes twice among them. To a caller that
    reads them they are a sequence of Contacts (decoded once, when first read)."""

    __slots__ = ("_rows", "data", "ends", "keys_unique", "received_at")

    def __init__(self, data: bytes, ends: array[int], keys_unique: bool, received_at: str):
        self.data = data
        self.ends = ends
        self.keys_unique = keys_unique
        self.received_at = received_at
        self._rows: list[Contact] | None = None

    def __reduce__(self) -> tuple[Any, ...]:  # (sent from a reader process: the bytes, not decoded rows)
        return (CopyRows, (self.data, self.ends, self.keys_unique, self.received_at))

    def __len__(self) -> int:
        return len(self.ends)

    @overload
    def __getitem__(self, index: int) -> Contact: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Contact]: ...

    def __getitem__(self, index: int | slice) -> Contact | Sequence[Contact]:
        return self.rows()[index]

    def __iter__(self) -> Iterator[Contact]:
        return iter(self.rows())

    def rows(self) -> list[Contact]:
        if self._rows is None:
            parse, transformer, data = parse_row_binary, _transformer(), memoryview(self.data)
            rows, start = [], 0
            for end in self.ends:
                rows.append(Contact._make(parse(data[start:end], transformer)[:_WIDTH]))
                start = end
            self._rows = rows
        return self._rows


class CopyRowPacker:
    """Makes the CopyRows of a list of rows (tuples in Contact field order), in a reader process. One packer per
    write: each row carries the ``received_at`` it was made with."""

    def __init__(self, received_at: str):
        self.received_at = received_at
        self._transformer: abc.Transformer | None = None

    def __call__(self, rows: Sequence[Sequence[Any]]) -> CopyRows:
        if self._transformer is None:
            self._transformer = _transformer()
        transformer, received_at, write = self._transformer, self.received_at, format_row_binary
        data = bytearray()
        ends = array("Q")
        end = ends.append
        for row in rows:
            write((*row, received_at), transformer, data)
            end(len(data))
        # No (source, id) twice: told by the ids alone as a rule (half the cost of a set of pairs: ~0.3 us a row of
        # a reader's ~15); by the pairs only when an id comes twice (one id from two sources is no repeat).
        keys_unique = len(set(map(_ID, rows))) == len(rows) or len({(row[0], row[1]) for row in rows}) == len(rows)
        return CopyRows(bytes(data), ends, keys_unique, received_at)
