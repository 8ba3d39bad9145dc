"""Reading a merchant's key upload (.txt or .csv) line by line, in bounded memory.

`read_upload` yields one `(line_number, secret, reason)` per non-blank line:
`reason` is None for a usable secret, else why that line is refused. A problem
with the whole file raises ImportRefused instead (bad file type, wrong
encoding, missing column, nothing to import), possibly after some lines were
yielded, so the caller must hold everything it stores in one transaction.
Plain tuples, not objects: a million lines go through here.
"""

import codecs
import csv
import re
from collections.abc import Iterator
from pathlib import PurePath
from typing import BinaryIO

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from .exceptions import ImportRefused

TEXT, CSV = "txt", "csv"
FORMATS = {".txt": TEXT, ".csv": CSV}

# Header names that mark the key column of a CSV file (compared lowercased).
KEY_COLUMN_NAMES = (
    "key",
    "keys",
    "card_key",
    "cardkey",
    "card key",
    "code",
    "secret",
    "卡密",
    "密钥",
    "激活码",
    "兑换码",
    "卡密内容",
)

_BLOCK_SIZE = 1024 * 1024
_SNIFF_SIZE = 64 * 1024
# A line longer than this is refused without being held in memory; generous
# enough for a CSV row with a few note columns beside a 512-character key.
_MAX_LINE_BYTES = 64 * 1024
# C0/C1 control characters plus the invisible format characters that pasting
# from chat apps and spreadsheets smuggles into keys.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_FOREIGN_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def upload_format(file_name: str) -> str:
    """TEXT or CSV from the file name; no name (pasted text, stdin) is text.
    Raises ImportRefused for any other extension."""
    if not file_name or file_name == "-":
        return TEXT
    suffix = PurePath(file_name).suffix.lower()
    if suffix not in FORMATS:
        raise ImportRefused(
            _("Only .txt and .csv files can be imported, not “%(name)s”.") % {"name": PurePath(file_name).name}
        )
    return FORMATS[suffix]


def _wrong_encoding() -> ImportRefused:
    return ImportRefused(_("The file is not UTF-8 text. Save it as UTF-8 (with or without BOM) and upload it again."))


def _binary(*, line: int) -> ImportRefused:
    return ImportRefused(
        _("The file holds binary data, not text (a NUL byte on line %(line)d). Upload a .txt or .csv file.")
        % {"line": line}
    )


def _nul_line(data: bytes, *, lines_before: int) -> int:
    """The line number of the first NUL byte in `data`, which starts a line."""
    return lines_before + data.count(b"\n", 0, data.index(b"\x00")) + 1


def _too_large() -> ImportRefused:
    return ImportRefused(
        _("The file is larger than %(size)s. Split it into smaller files.")
        % {"size": filesizeformat(settings.CARDKEY_IMPORT_MAX_BYTES)}
    )


def _check_start(head: bytes) -> bytes:
    """The first block without a UTF-8 BOM. Refuses other Unicode encodings and binary files."""
    if head.startswith(_FOREIGN_BOMS):
        raise _wrong_encoding()
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    sample = head[:_SNIFF_SIZE]
    if b"\x00" in sample:
        raise _wrong_encoding() if _looks_like_utf16(sample) else _binary(line=_nul_line(head, lines_before=0))
    return head


def _looks_like_utf16(sample: bytes) -> bool:
    # UTF-16 without a BOM puts a NUL beside nearly every ASCII character,
    # always on the same side; binary formats scatter theirs.
    half = len(sample) // 2
    nuls = sorted((sample[0::2].count(0), sample[1::2].count(0)))
    return half > 0 and nuls[1] >= 0.7 * half and nuls[0] <= 0.1 * half


def _raw_lines(source: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the newline); None for a line over _MAX_LINE_BYTES."""
    buffer = _check_start(source.read(_BLOCK_SIZE))
    total = len(buffer)
    number = 0
    overlong = False
    while buffer:
        if b"\x00" in buffer:
            raise _binary(line=_nul_line(buffer, lines_before=number))
        lines = buffer.split(b"\n")
        buffer = lines.pop()
        for raw in lines:
            number += 1
            yield number, (None if overlong else raw)
            overlong = False
        if len(buffer) > _MAX_LINE_BYTES:
            overlong, buffer = True, b""
        block = source.read(_BLOCK_SIZE)
        if not block:
            break
        total += len(block)
        if total > settings.CARDKEY_IMPORT_MAX_BYTES:
            raise _too_large()
        buffer += block
    if buffer or overlong:
        yield number + 1, (None if overlong else buffer)


def _key_column(header: list[str], column: str | None) -> int | None:
    """The index of the key column if `header` is a header row, else None (the
    first row is data and the key is in the first column). Raises
    ImportRefused when a named column is missing."""
    names = [cell.strip().lstrip("\ufeff").lower() for cell in header]
    if column:
        wanted = column.strip().lower()
        if wanted not in names:
            raise ImportRefused(
                _("The CSV header has no column “%(column)s” (it has: %(found)s).")
                % {"column": column, "found": ", ".join(cell.strip() for cell in header) or "—"}
            )
        return names.index(wanted)
    for name in KEY_COLUMN_NAMES:
        if name in names:
            return names.index(name)
    return None


def _secret_problem(secret: str) -> str | None:
    if len(secret) > settings.CARDKEY_MAX_LENGTH:
        return _("longer than %(max)d characters") % {"max": settings.CARDKEY_MAX_LENGTH}
    if _CONTROL.search(secret):
        return _("contains control or invisible characters")
    return None


def read_upload(source: BinaryIO, *, fmt: str, column: str | None = None) -> Iterator[tuple[int, str, str | None]]:
    """Yield (line number, secret, refusal reason or None) for every non-blank line.

    Raises ImportRefused for a whole-file problem; it may come after lines were
    yielded (wrong encoding is only certain at the end)."""
    decoded = undecodable = 0
    key_index = 0
    header_pending = fmt == CSV
    too_long = _("line too long")
    not_utf8 = _("not valid UTF-8")
    for number, raw in _raw_lines(source):
        if raw is None:
            yield number, "", too_long
            continue
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            if raw.strip():
                undecodable += 1
                yield number, "", not_utf8
            continue
        if not text:
            continue
        decoded += 1
        if fmt == CSV:
            row = next(csv.reader((text,)), [])
            if header_pending:
                header_pending = False
                found = _key_column(row, column)
                if found is not None:
                    key_index = found
                    continue
            if key_index >= len(row):
                yield number, "", _("no value in the key column")
                continue
            secret = row[key_index].strip()
            if not secret:
                yield number, "", _("the key column is empty")
                continue
        else:
            secret = text
        yield number, secret, _secret_problem(secret)
    if undecodable > decoded:
        raise _wrong_encoding()
