"""A small Parquet writer in pure Python: what producers and the owner's flushes write, without pyarrow.

Importing pyarrow costs a process ~37 MB and pandas ~80 MB (benchmarks/bench_footprint.py); a producer's whole
budget is 20 MB. A segment needs little of Parquet: one row group, one page per column, and three encodings:

- PLAIN for numbers: the bytes of an ``array.array`` as they are (Parquet is little-endian, like the machines
  duckpulse runs on; ``write`` refuses a big-endian one rather than write garbage);
- RLE_DICTIONARY for strings: the buffer already holds them as small integer ids, so the dictionary page holds
  the strings and the data page the ids, bit-packed at width 8, 16 or 32 (at those widths bit-packing is just
  the ids' bytes), and a column whose every row holds the same value (pid, host) is one RLE run;
- nullable columns carry definition levels (bit width 1, RLE/bit-packed hybrid), so a NULL is a NULL in the
  file, for any reader.

Pages are uncompressed (a segment lives only until the owner ingests it) or GZIP through zlib, which DuckDB
and every other reader understand. The footer is thrift's compact protocol, written by hand below: only the
fields DuckDB, pyarrow and Spark need. The file describes itself: row count, column types, and key-value
metadata naming the table (``duckpulse.table``), which the owner checks before it loads anything.
"""

from __future__ import annotations

import os
import stat
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"PAR1"
# Parquet physical types
BOOLEAN, INT32, INT64, DOUBLE, BYTE_ARRAY = 0, 1, 2, 5, 6
# Parquet converted types (the annotations every reader knows)
UTF8, TIMESTAMP_MICROS, INT_16 = 0, 10, 16
# Encodings
PLAIN, RLE, RLE_DICTIONARY = 0, 3, 8
# Page types
DATA_PAGE, DICTIONARY_PAGE = 0, 2
# Codecs
UNCOMPRESSED, GZIP = 0, 2
# Thrift compact protocol field types
_I32, _I64, _BINARY, _LIST, _STRUCT = 5, 6, 8, 9, 12


@dataclass
class Column:
    """One column of a segment.

    ``values`` holds the non-null values in row order: an ``array.array`` of the physical type for PLAIN
    (``'q'`` INT64, ``'i'`` INT32, ``'d'`` DOUBLE, ``'B'`` 0/1 for BOOLEAN), or the dictionary ids for a
    dictionary column. ``dictionary``: the values the ids index (str for BYTE_ARRAY, int for INT32/INT64).
    ``defined``: for a nullable column, one byte per row, 1 where the row has a value (None: all rows do).
    ``constant``: a dictionary column whose every row holds id 0 (``values`` is then unused).
    """

    name: str
    physical: int
    values: array[int] | array[float]
    converted: int | None = None
    dictionary: Sequence[str] | Sequence[int] | None = None
    defined: bytes | None = None
    nullable: bool = False
    constant: bool = False


# -- thrift compact protocol --------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


class _Struct:
    """Writes one thrift struct's fields in increasing id order (the compact protocol's field deltas)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._last = 0

    def _field(self, fid: int, ftype: int) -> None:
        delta = fid - self._last
        if 0 < delta <= 15:
            self.out.append((delta << 4) | ftype)
        else:
            self.out.append(ftype)
            self.out += _zigzag(fid)
        self._last = fid

    def i32(self, fid: int, value: int) -> _Struct:
        self._field(fid, _I32)
        self.out += _zigzag(value)
        return self

    def i64(self, fid: int, value: int) -> _Struct:
        self._field(fid, _I64)
        self.out += _zigzag(value)
        return self

    def binary(self, fid: int, value: bytes | str) -> _Struct:
        data = value.encode() if isinstance(value, str) else value
        self._field(fid, _BINARY)
        self.out += _varint(len(data)) + data
        return self

    def struct(self, fid: int, value: _Struct) -> _Struct:
        self._field(fid, _STRUCT)
        self.out += value.end()
        return self

    def list(self, fid: int, elem_type: int, items: Sequence[bytes]) -> _Struct:
        """A list field; ``items`` are already encoded (structs with ``end()``, or zigzag ints, or binaries)."""
        self._field(fid, _LIST)
        n = len(items)
        self.out.append((n << 4) | elem_type if n < 15 else 0xF0 | elem_type)
        if n >= 15:
            self.out += _varint(n)
        for item in items:
            self.out += item
        return self

    def end(self) -> bytes:
        return bytes(self.out) + b"\x00"


def _binary_item(value: str) -> bytes:
    data = value.encode()
    return _varint(len(data)) + data


# -- encodings ----------------------------------------------------------------------------------------------
def _bitpack_flags(flags: bytes) -> bytes:
    """0/1 bytes -> one bit each, LSB first, padded to whole groups of 8 (the RLE hybrid's bit-packed run)."""
    # Each strided slice holds flag j of every group as a 0/1 byte; as one integer, shifted by j, its bits land
    # at 8k + j, so the sum of the eight is the packed bytes. All in C, whatever the row count.
    groups = (len(flags) + 7) // 8
    packed = sum(int.from_bytes(flags[j::8], "little") << j for j in range(8))
    return packed.to_bytes(groups, "little")


def _levels(defined: bytes) -> bytes:
    """Definition levels (bit width 1) as a v1 data page holds them: a 4-byte length, then the RLE hybrid."""
    n = len(defined)
    if defined.count(1) == n:
        body = _varint(n << 1) + b"\x01"  # one RLE run of n ones
    else:
        body = _varint(((n + 7) // 8) << 1 | 1) + _bitpack_flags(defined)
    return struct.pack("<I", len(body)) + body


def _ids(values: array[int], n: int, dictionary_size: int) -> bytes:
    """Dictionary ids as a data page holds them: the bit width, then one bit-packed run (width 8, 16 or 32)."""
    if dictionary_size <= 1 << 8:
        width, code = 8, "B"
    elif dictionary_size <= 1 << 16:
        width, code = 16, "H"
    else:
        width, code = 32, "I"
    pad = -n % 8
    return bytes([width]) + _varint(((n + pad) // 8) << 1 | 1) + _narrow(values, code) + b"\x00" * (pad * width // 8)


def _narrow(values: array[int], code: str) -> bytes:
    """The ids' bytes at the item size of ``code`` (the ids fit): strided byte slices, C speed (little-endian)."""
    size = array(code).itemsize
    data = values.tobytes()
    if values.itemsize == size:
        return data
    if values.itemsize < size:
        return array(code, values).tobytes()
    out = bytearray(len(values) * size)
    for i in range(size):  # keep the low ``size`` bytes of each item
        out[i::size] = data[i::values.itemsize]
    return bytes(out)


def _plain_dictionary(physical: int, dictionary: Sequence[str] | Sequence[int]) -> bytes:
    if physical == BYTE_ARRAY:
        parts = []
        for value in dictionary:
            data = str(value).encode("utf-8", "surrogatepass")
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return array("q" if physical == INT64 else "i", dictionary).tobytes()


# -- the file -------------------------------------------------------------------------------------------------
def _page(page_type: int, body: bytes, header: _Struct, codec: int) -> bytes:
    data = zlib.compress(body, 1, wbits=31) if codec == GZIP else body
    page = _Struct().i32(1, page_type).i32(2, len(body)).i32(3, len(data))
    page.struct(5 if page_type == DATA_PAGE else 7, header)
    return page.end() + data


def write(f: BinaryIO, columns: Sequence[Column], num_rows: int, metadata: dict[str, str],
          codec: int = UNCOMPRESSED) -> int:
    """Write one Parquet file of ``num_rows`` rows (one row group) to ``f``; returns the bytes written."""
    if sys.byteorder != "little":
        raise RuntimeError("duckpulse's Parquet writer writes arrays as they are in memory: little-endian only")
    f.write(MAGIC)
    offset = len(MAGIC)
    chunks = []
    for col in columns:
        start = offset
        dict_offset = None
        encodings = [RLE]
        if col.dictionary is not None:
            dict_offset = offset
            dict_page = _page(DICTIONARY_PAGE, _plain_dictionary(col.physical, col.dictionary),
                              _Struct().i32(1, len(col.dictionary)).i32(2, PLAIN), codec)
            f.write(dict_page)
            offset += len(dict_page)
            if col.constant:  # every row holds id 0: one RLE run, whatever the row count
                body = b"\x08" + _varint(num_rows << 1) + b"\x00"
            else:
                body = _ids(col.values, len(col.values), len(col.dictionary))  # type: ignore[arg-type]
            encoding = RLE_DICTIONARY
            encodings += [PLAIN, RLE_DICTIONARY]
        else:
            # BOOLEAN is bit-packed in PLAIN; the other types are their arrays' bytes
            body = _bitpack_flags(bytes(col.values)) if col.physical == BOOLEAN else col.values.tobytes()
            encoding = PLAIN
            encodings.append(PLAIN)
        if col.nullable:
            body = _levels(col.defined if col.defined is not None else b"\x01" * num_rows) + body
        data_offset = offset
        data_page = _page(DATA_PAGE, body, _Struct().i32(1, num_rows).i32(2, encoding).i32(3, RLE).i32(4, RLE),
                          codec)
        f.write(data_page)
        offset += len(data_page)
        meta = (_Struct().i32(1, col.physical).list(2, _I32, [_zigzag(e) for e in encodings])
                .list(3, _BINARY, [_binary_item(col.name)]).i32(4, codec).i64(5, num_rows)
                .i64(6, offset - start).i64(7, offset - start).i64(9, data_offset))
        if dict_offset is not None:
            meta.i64(11, dict_offset)
        chunks.append((_Struct().i64(2, start).struct(3, meta).end(), offset - start))
    schema = [_Struct().binary(4, "schema").i32(5, len(columns)).end()]
    for col in columns:
        element = _Struct().i32(1, col.physical).i32(3, 1 if col.nullable else 0).binary(4, col.name)
        if col.converted is not None:
            element.i32(6, col.converted)
        schema.append(element.end())
    row_group = (_Struct().list(1, _STRUCT, [c for c, _ in chunks]).i64(2, sum(size for _, size in chunks))
                 .i64(3, num_rows).end())
    # The row groups (field 4) go last: thrift fields may come in any order, and a reader that only needs the
    # row count, the schema and the key-value metadata (read_footer) then stops before the per-column metadata.
    footer = (_Struct().i32(1, 1).list(2, _STRUCT, schema).i64(3, num_rows)
              .list(5, _STRUCT, [_Struct().binary(1, k).binary(2, v).end() for k, v in metadata.items()])
              .binary(6, "duckpulse").list(4, _STRUCT, [row_group]).end())
    f.write(footer)
    f.write(struct.pack("<I", len(footer)))
    f.write(MAGIC)
    return offset + len(footer) + 8


# -- reading a footer back (what the owner checks before it loads a segment) --------------------------------
@dataclass(frozen=True)
class Footer:
    """What a Parquet file's footer says: its row count, its leaf columns (name -> physical type) and its
    key-value metadata."""

    num_rows: int
    columns: dict[str, int]
    metadata: dict[str, str]


class FooterError(ValueError):
    """The file is not Parquet, or its footer cannot be decoded."""


class _Reader:
    """Thrift compact protocol, the subset a footer needs; unknown fields are skipped."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def binary(self) -> bytes:
        n = self.varint()
        self.pos += n
        if self.pos > len(self.data):
            raise FooterError("a string runs past the end of the footer")
        return self.data[self.pos - n:self.pos]

    def fields(self) -> Iterator[tuple[int, int]]:
        """(field id, type) of each field of the struct being read, up to its end."""
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return
            ftype, delta = header & 0x0F, header >> 4
            last = last + delta if delta else self.zigzag()
            yield last, ftype

    def list_header(self) -> tuple[int, int]:
        header = self.byte()
        size = header >> 4
        return (self.varint() if size == 15 else size), header & 0x0F

    def skip(self, ftype: int) -> None:
        if ftype in (1, 2):  # booleans: the value is the type
            return
        if ftype == 3:
            self.pos += 1
        elif ftype in (4, 5, 6):
            self.varint()
        elif ftype == 7:
            self.pos += 8
        elif ftype == 8:
            self.binary()
        elif ftype in (9, 10):
            size, elem = self.list_header()
            for _ in range(size):
                self.skip_element(elem)
        elif ftype == 11:
            size = self.varint()
            if size:
                kinds = self.byte()
                for _ in range(size):
                    self.skip_element(kinds >> 4)
                    self.skip_element(kinds & 0x0F)
        elif ftype == 12:
            for _, inner in self.fields():
                self.skip(inner)
        else:
            raise FooterError(f"unknown thrift type {ftype}")

    def skip_element(self, ftype: int) -> None:
        if ftype in (1, 2):  # a boolean inside a list takes one byte
            self.pos += 1
        else:
            self.skip(ftype)


def read_footer(path: str | os.PathLike[str]) -> Footer:
    """Decode a Parquet file's footer (a few kilobytes at its end); raises FooterError if it is not Parquet."""
    # Never blocks, never follows a symlink: a FIFO, a device or a link swapped in under a segment's name is
    # refused here instead of hanging the owner's ingest on a read that never returns.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FooterError("not a regular file (a FIFO, socket, device or directory)")
    with open(fd, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < 12:
            raise FooterError(f"{size} bytes: too short for a Parquet file")
        f.seek(size - 8)
        tail = f.read(8)
        length = struct.unpack("<I", tail[:4])[0]
        if tail[4:] != MAGIC or length > size - 12:
            raise FooterError("no Parquet footer at the end of the file (a torn or foreign file)")
        f.seek(size - 8 - length)
        reader = _Reader(f.read(length))
    num_rows = -1
    columns: dict[str, int] = {}
    metadata: dict[str, str] = {}
    try:
        for fid, ftype in reader.fields():
            if fid == 4 and num_rows >= 0 and columns and metadata:
                break  # the row groups, after everything wanted (duckpulse writes them last)
            if fid == 2 and ftype == _LIST:
                count, _ = reader.list_header()
                for _ in range(count):
                    element: dict[int, int | bytes] = {}
                    for efid, etype in reader.fields():
                        if efid in (1, 5) and etype == _I32:
                            element[efid] = reader.zigzag()
                        elif efid == 4 and etype == _BINARY:
                            element[4] = reader.binary()
                        else:
                            reader.skip(etype)
                    if 5 not in element and 1 in element:  # a leaf: it has a type and no children
                        columns[bytes(element.get(4, b"")).decode(errors="replace")] = int(element[1])
            elif fid == 3 and ftype == _I64:
                num_rows = reader.zigzag()
            elif fid == 5 and ftype == _LIST:
                count, _ = reader.list_header()
                for _ in range(count):
                    key = value = b""
                    for kfid, ktype in reader.fields():
                        if kfid == 1 and ktype == _BINARY:
                            key = reader.binary()
                        elif kfid == 2 and ktype == _BINARY:
                            value = reader.binary()
                        else:
                            reader.skip(ktype)
                    metadata[key.decode(errors="replace")] = value.decode(errors="replace")
            else:
                reader.skip(ftype)
    except (IndexError, FooterError) as exc:
        raise FooterError(f"the footer cannot be decoded: {exc or 'it ends too early'}") from None
    if num_rows < 0:
        raise FooterError("the footer holds no row count")
    return Footer(num_rows, columns, metadata)
