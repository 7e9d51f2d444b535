"""The raw records in SQLite, compressed with a dictionary trained on the store's own records (zstd).

Why: a platform event is mostly the same keys and structure every time (an Amazon Connect CTR is ~2.5 KB), and
stored as text it was most of a contacts row: most of the bytes an import wrote (twice: WAL, then checkpoint)
and every scan of the table read. zstd with a dictionary learned from such records makes a CTR about a tenth of
its size (zlib or zstd without one: half, several times slower).

SQLite is dynamically typed: a raw of at least ``MIN_BYTES`` bytes is stored as a BLOB, a zstd frame that names
its dictionary (the frame's dictionary id is a ``raw_dictionaries`` row's), and any other raw as TEXT, as before.
So old rows need no rewrite, and a BLOB in ``raw`` always means compressed. The dictionary is trained once, from
the raws of the first write that has at least ``TRAIN_SAMPLES`` long ones, in that write's transaction (until
then raws are stored as text). Every dictionary ever used is kept: nothing stored is ever unreadable.
A dictionary holds pieces of the records it learned from, and it outlives them: so it learns only the records'
keys and the values that at least ``SHARED_BY`` customers' records hold (queues, agents, ARNs, flags), never
a value of one customer's (a phone number, a name, an id), which ``contacts forget`` must erase with them.
PostgreSQL needs none of this: it compresses long values itself (TOAST).

A big import compresses in its reader processes, not in the one writer (``SQLiteContactStore.raw_packer``): a
``RawPacker`` carries the dictionary (the store's newest, or one trained from the head of the file, with the same
rules) to them, and the writer stores that dictionary in the import's transaction if it is not stored yet.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any, Final, cast

import orjson
import zstandard

MIN_BYTES: Final = 1024  # shorter raws (a generic record is ~350 bytes) are stored as text: little to gain
TRAIN_SAMPLES: Final = 200  # long raws in one write before a dictionary is trained from them (at most 4x this)
DICTIONARY_BYTES: Final = 16_384
# With a dictionary, on 2.5 KB CTRs: level 1 ~4.5 us and 166 bytes, level 3 ~7.3 us and 157 bytes.
LEVEL: Final = 1
SHARED_BY: Final = 3  # customers whose records must all hold a value for a dictionary to learn it


class RawCodec:
    """Compresses the raws a write stores and gives back the exact text of any stored raw.

    The writer (one thread at a time, under the store's write lock) compresses; any thread decompresses.
    Dictionary ids are random (zstd's private range): one trained by a write that was rolled back is never
    reused, so nothing cached here can name another dictionary.
    """

    def __init__(self) -> None:
        self._compressor: zstandard.ZstdCompressor | None = None
        self._dictionary_id: int | None = None  # the one new raws are compressed with
        self._dictionaries: dict[int, zstandard.ZstdCompressionDict] = {}
        self._local = threading.local()  # a decompressor per thread and dictionary (they are not thread-safe)

    def pack(self, conn: sqlite3.Connection, raws: Sequence[Any], customers: Sequence[str]) -> list[Any] | None:
        """``raws`` as stored, long ones compressed, or None when they are all stored as they are (``conn``: the
        write transaction, where the dictionary is read, or trained and added; ``customers``: whose each raw is)."""
        long_ones = [(raw, customer) for raw, customer in zip(raws, customers, strict=True) if len(raw) >= MIN_BYTES]
        if not long_ones:
            return None
        row = conn.execute("SELECT id FROM raw_dictionaries ORDER BY trained_us DESC LIMIT 1").fetchone()
        if row is None:
            self._compressor = self._dictionary_id = None  # (one trained by a write that was rolled back)
            if len(long_ones) < TRAIN_SAMPLES or not self._train(conn, long_ones):
                return None
        elif row[0] != self._dictionary_id:
            self._use(row[0], self._dictionaries.get(row[0]) or self._read(conn, row[0]))
        compress = self._compressor.compress  # type: ignore[union-attr]
        return [compress(raw.encode()) if len(raw) >= MIN_BYTES else raw for raw in raws]

    def adopt(self, conn: sqlite3.Connection, packer: RawPacker) -> None:
        """Make ``packer``'s dictionary the one this write compresses with, stored in ``conn``'s transaction if it
        is not yet (one trained for an import). Raises ValueError if another dictionary has its id."""
        row = conn.execute("SELECT dictionary FROM raw_dictionaries WHERE id = ?", (packer.dictionary_id,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO raw_dictionaries (id, dictionary, trained_us) VALUES (?, ?, ?)",
                (packer.dictionary_id, packer.dictionary, time.time_ns() // 1000),
            )
        elif bytes(row[0]) != packer.dictionary:
            raise ValueError(f"compression dictionary {packer.dictionary_id} is stored with other contents")
        self._use(packer.dictionary_id, zstandard.ZstdCompressionDict(packer.dictionary))

    def packer(self, conn: sqlite3.Connection, samples: Sequence[tuple[str, str]]) -> RawPacker | None:
        """A packer with the store's newest dictionary (read by ``conn``), or else one trained from ``samples``
        (raw, customer) and not stored yet; None when there is none and too little to learn from."""
        row = conn.execute("SELECT id, dictionary FROM raw_dictionaries ORDER BY trained_us DESC LIMIT 1").fetchone()
        if row is not None:
            return RawPacker(row[0], bytes(row[1]))
        long_ones = [(raw, customer) for raw, customer in samples if len(raw) >= MIN_BYTES]
        trained = _trained(long_ones) if len(long_ones) >= TRAIN_SAMPLES else None
        return None if trained is None else RawPacker(trained[0], trained[1].as_bytes())

    def unpack(self, conn: sqlite3.Connection, stored: Any) -> Any:
        """The raw text of a stored value (text as it is; a BLOB decompressed with its dictionary, read by ``conn``)."""
        if type(stored) is not bytes:
            return stored
        dictionary_id = zstandard.get_frame_parameters(stored).dict_id
        decompressors: dict[int, zstandard.ZstdDecompressor] = self._local.__dict__.setdefault("decompressors", {})
        decompressor = decompressors.get(dictionary_id)
        if decompressor is None:
            dictionary = self._dictionaries.get(dictionary_id) or self._read(conn, dictionary_id)
            decompressor = decompressors[dictionary_id] = zstandard.ZstdDecompressor(dict_data=dictionary)
        return decompressor.decompress(stored).decode()

    def _read(self, conn: sqlite3.Connection, dictionary_id: int) -> zstandard.ZstdCompressionDict:
        row = conn.execute("SELECT dictionary FROM raw_dictionaries WHERE id = ?", (dictionary_id,)).fetchone()
        if row is None:
            raise ValueError(f"a stored raw record names compression dictionary {dictionary_id}, which is not stored")
        dictionary = self._dictionaries[dictionary_id] = zstandard.ZstdCompressionDict(row[0])
        return dictionary

    def _train(self, conn: sqlite3.Connection, samples: list[tuple[str, str]]) -> bool:
        """Train and store a dictionary from ``samples`` (raw, customer), from what they share only (see the module);
        False when zstd finds too little in them to learn."""
        trained = _trained(samples)
        if trained is None:
            return False
        dictionary_id, dictionary = trained
        conn.execute(
            "INSERT INTO raw_dictionaries (id, dictionary, trained_us) VALUES (?, ?, ?)",
            (dictionary_id, dictionary.as_bytes(), time.time_ns() // 1000),
        )
        self._use(dictionary_id, dictionary)
        return True

    def _use(self, dictionary_id: int, dictionary: zstandard.ZstdCompressionDict) -> None:
        self._dictionaries[dictionary_id] = dictionary
        self._dictionary_id = dictionary_id
        self._compressor = _compressor(dictionary)


class RawPacker:
    """Compresses raws as the store keeps them, with one dictionary: what an import's reader processes use, so that
    the writer does not (``SQLiteContactStore.raw_packer``). Built on the dictionary's bytes, so that it can be
    handed to another process; its compressor is made where it is first used."""

    def __init__(self, dictionary_id: int, dictionary: bytes):
        self.dictionary_id = dictionary_id
        self.dictionary = dictionary
        self._zstd: zstandard.ZstdCompressor | None = None

    def pack(self, raw: bytes) -> str | bytes:
        """The raw (its UTF-8 bytes) as stored: compressed when it is long, else its text."""
        if len(raw) < MIN_BYTES:
            return raw.decode()
        return self._compressor().compress(raw)

    def pack_all(self, raws: list[bytes]) -> list[str | bytes]:
        """``pack`` of each raw, the long ones compressed in one call: the same frames in about half the time
        (2.5 KB Connect CTRs: 3.6 against 6.6 us a raw; most of ``compress``'s time is its per-call set-up)."""
        long_ones = [raw for raw in raws if len(raw) >= MIN_BYTES]
        if len(long_ones) < 2:  # (the batch call wants at least one; for one it does not pay)
            return [self.pack(raw) for raw in raws]
        try:
            batch = self._compressor().multi_compress_to_buffer(cast("list[bytes | bytearray | memoryview]", long_ones))
            frames = iter([batch[i].tobytes() for i in range(len(batch))])
        except NotImplementedError:  # (zstandard's CFFI backend has no batch call)
            return [self.pack(raw) for raw in raws]
        if len(long_ones) == len(raws):
            return list(frames)
        return [next(frames) if len(raw) >= MIN_BYTES else raw.decode() for raw in raws]

    def _compressor(self) -> zstandard.ZstdCompressor:
        if self._zstd is None:  # (made where it is first used: the packer may have been sent to another process)
            self._zstd = _compressor(zstandard.ZstdCompressionDict(self.dictionary))
        return self._zstd

    def __getstate__(self) -> dict[str, Any]:
        return {"dictionary_id": self.dictionary_id, "dictionary": self.dictionary, "_zstd": None}


def _compressor(dictionary: zstandard.ZstdCompressionDict) -> zstandard.ZstdCompressor:
    dictionary.precompute_compress(level=LEVEL)  # (else each compress call loads the dictionary again)
    return zstandard.ZstdCompressor(level=LEVEL, dict_data=dictionary, write_checksum=False)


def _trained(samples: Sequence[tuple[str, str]]) -> tuple[int, zstandard.ZstdCompressionDict] | None:
    """A new dictionary (with its random id) learned from what ``samples`` (raw, customer) share (see the module);
    None when zstd finds too little in them to learn."""
    step = max(1, len(samples) // (4 * TRAIN_SAMPLES))
    shared: list[bytes | bytearray | memoryview] = list(shared_only(samples[::step]))  # (zstd's own type)
    if len(shared) < TRAIN_SAMPLES // 2:  # mostly not JSON: nothing this knows how to clean to learn from
        return None
    dictionary_id = secrets.randbelow(_ID_END - _ID_START) + _ID_START
    try:
        return dictionary_id, zstandard.train_dictionary(DICTIONARY_BYTES, shared, dict_id=dictionary_id)
    except zstandard.ZstdError:
        return None


def shared_only(samples: Sequence[tuple[str, str]]) -> list[bytes]:
    """The JSON samples (raw, customer) with every value that fewer than ``SHARED_BY`` customers' samples hold
    blanked (text to "", numbers to 0); keys and structure kept. Samples that are not JSON are left out."""
    parsed: list[Any] = []
    holders: dict[Any, set[str]] = {}  # a value -> customers whose samples hold it (up to SHARED_BY)
    for raw, customer in samples:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        parsed.append(document)
        for value in _values(document):
            seen = holders.setdefault(value, set())
            if len(seen) < SHARED_BY:
                seen.add(customer)
    common = {value for value, seen in holders.items() if len(seen) >= SHARED_BY}
    return [orjson.dumps(_blank(document, common)) for document in parsed]


def _values(document: Any) -> Any:
    """Every scalar value in a JSON document (keys are not values)."""
    if isinstance(document, dict):
        for value in document.values():
            yield from _values(value)
    elif isinstance(document, list):
        for value in document:
            yield from _values(value)
    elif isinstance(document, (str, int, float)) and not isinstance(document, bool):
        yield (type(document), document)


def _blank(document: Any, common: set[Any]) -> Any:
    if isinstance(document, dict):
        return {key: _blank(value, common) for key, value in document.items()}
    if isinstance(document, list):
        return [_blank(value, common) for value in document]
    if isinstance(document, (str, int, float)) and not isinstance(document, bool):
        if (type(document), document) in common:
            return document
        return "" if isinstance(document, str) else 0
    return document


_ID_START, _ID_END = 1 << 15, 1 << 31  # zstd reserves dictionary ids below 32768
