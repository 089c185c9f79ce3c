"""File names as the file system returns them: any bytes, hashed as bytes, shown escaped.

On Linux a name is a byte string; Python decodes the bytes that are not UTF-8 (`caf\\xe9.png` from an old
archive or a Windows copy) to lone surrogates (PEP 383), which `str.encode("utf-8")` and a UTF-8 terminal
refuse. `name_bytes` gives the original bytes back, as `os.fsencode` does on a UTF-8 system (UTF-8 with
`surrogateescape`), but without depending on the locale: UTF-8 names give exactly their UTF-8 bytes, so
hashes of such names do not change. `shown` is the name with each undecodable byte written as `\\xNN`,
safe to print anywhere.
"""

from __future__ import annotations

import os


def name_bytes(name: str | os.PathLike) -> bytes:
    """The bytes of a name or path as the file system holds them (UTF-8 for every UTF-8 name)."""
    name = os.fspath(name)
    if isinstance(name, bytes):
        return name
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no file system produced (not from PEP 383)
        return name.encode("utf-8", "surrogatepass")


def shown(name: str | os.PathLike) -> str:
    """A name or path for messages: valid UTF-8 unchanged, other bytes as `\\xNN` (never raises)."""
    return name_bytes(name).decode("utf-8", "backslashreplace")
