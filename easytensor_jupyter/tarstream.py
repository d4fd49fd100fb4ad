"""A tar stream reader with a bound on every header, for bundle uploads.

``tarfile`` reads a PAX or GNU long-name header whole, whatever size it declares, before the
caller sees the member it describes, so a 150 MB header costs 150 MB (and more to parse). A
bundle has four short fixed names, so this reader caps each extended header, how many may come
in a row, and the length of a name, and reads member data in pieces the caller asks for. The
512-byte header blocks themselves are parsed by ``tarfile.TarInfo.frombuf``.
"""

from __future__ import annotations

import tarfile
from typing import IO

__all__ = ["MAX_NAME_BYTES", "MAX_TAR_HEADER", "TarMember", "TarStreamError", "TarStreamReader"]

BLOCK = tarfile.BLOCKSIZE
_SKIP_CHUNK = 1 << 20


class TarStreamError(ValueError):
    """The stream is not a tar, is truncated or corrupt, or has a header over a limit."""


MAX_TAR_HEADER = 64 << 10
MAX_NAME_BYTES = 256
_MAX_EXTENSIONS = 8
_EXTENSION_KINDS = {
    tarfile.XHDTYPE: "PAX",
    tarfile.SOLARIS_XHDTYPE: "PAX",
    tarfile.XGLTYPE: "PAX global",
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link",
}
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_LINK_TYPES = (tarfile.SYMTYPE, tarfile.LNKTYPE)


class TarMember:
    def __init__(self, name: str, kind: bytes, size: int) -> None:
        self.name = name
        self.kind = kind
        self.size = size

    def isreg(self) -> bool:
        return self.kind in _FILE_TYPES

    def describe(self) -> str:
        return "symlink" if self.kind in _LINK_TYPES else "non-file entry"


class TarStreamReader:
    """Members one after another: ``next()`` for a header, then ``read()`` for its data.

    Only uncompressed tar streams: the bundle's files are weights, which do not compress.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.offset = 0
        self._left = 0
        self._padding = 0

    def _read(self, size: int) -> bytes:
        parts: list[bytes] = []
        wanted = size
        while wanted:
            chunk = self._stream.read(wanted)
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.offset += len(data)
        return data

    def _exactly(self, size: int, what: str) -> bytes:
        data = self._read(size)
        if len(data) != size:
            raise TarStreamError(f"the bundle is truncated (in a {what} at byte {self.offset})")
        return data

    def _skip(self, size: int) -> None:
        while size:
            step = min(size, _SKIP_CHUNK)
            self._exactly(step, "member")
            size -= step

    def read(self, size: int) -> bytes:
        """The current member's data, up to ``size`` bytes (what one read of the stream gives,
        so pieces pass through without being joined); b"" at its end."""
        data = self._stream.read(min(size, self._left)) if self._left else b""
        self.offset += len(data)
        self._left -= len(data)
        if not data and self._left:
            raise TarStreamError(f"the bundle is truncated (at byte {self.offset})")
        return data

    def read_all(self) -> bytes:
        """The rest of the current member's data (the caller has checked its size)."""
        parts: list[bytes] = []
        while chunk := self.read(self._left):
            parts.append(chunk)
        return b"".join(parts)

    def _block(self) -> bytes | None:
        block = self._read(BLOCK)
        if not block:
            if self.offset == 0:
                raise TarStreamError("the upload is not a tar bundle (it is empty)")
            return None
        if len(block) != BLOCK:
            raise TarStreamError(f"the bundle is truncated (in a tar header at byte {self.offset})")
        return block

    def next(self) -> TarMember | None:
        """The next member's header, after skipping what is left of the current one."""
        self._skip(self._left + self._padding)
        self._left = self._padding = 0
        pax: dict[str, str] = {}
        long_name: str | None = None
        for _ in range(_MAX_EXTENSIONS + 1):
            start = self.offset
            block = self._block()
            if block is None or block.count(0) == BLOCK:
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                if start == 0:
                    raise TarStreamError(f"the upload is not a tar bundle ({exc})") from None
                raise TarStreamError(
                    f"the bundle has a corrupt tar header at byte {start} ({exc})"
                ) from None
            size = info.size
            if size < 0:
                raise TarStreamError(f"the tar header at byte {start} gives a negative size")
            kind = _EXTENSION_KINDS.get(info.type)
            if kind is None:
                return self._member(info, pax, long_name, start)
            if size > MAX_TAR_HEADER:
                raise TarStreamError(
                    f"the {kind} tar header at byte {start} is {size} bytes; bundle headers "
                    f"are limited to {MAX_TAR_HEADER} bytes"
                )
            data = self._exactly(size, f"{kind} header")
            self._skip(-size % BLOCK)
            if info.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
                pax.update(_pax_records(data, start))
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        raise TarStreamError(
            f"more than {_MAX_EXTENSIONS} extended tar headers in a row before byte {self.offset}"
        )

    def _member(
        self, info: tarfile.TarInfo, pax: dict[str, str], long_name: str | None, start: int
    ) -> TarMember:
        name = pax.get("path", long_name if long_name is not None else info.name)
        if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise TarStreamError(
                f"the bundle member at byte {start} has a name over {MAX_NAME_BYTES} bytes"
            )
        size = info.size
        if "size" in pax:
            if not pax["size"].isdigit():
                raise TarStreamError(f"the PAX header before byte {start} has a bad size")
            size = int(pax["size"])
        kind = info.type
        if any(key.startswith("GNU.sparse") for key in pax):
            kind = tarfile.GNUTYPE_SPARSE
        if kind in _FILE_TYPES:
            self._left, self._padding = size, -size % BLOCK
        return TarMember(name, kind, size)


def _pax_records(data: bytes, start: int) -> dict[str, str]:
    """``"%d %s=%s\\n"`` records, as POSIX defines them; malformed ones refuse the bundle."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + 20)
        length = data[pos:space]
        if space < 0 or not length.isdigit() or int(length) <= space - pos:
            raise TarStreamError(f"the PAX header at byte {start} is malformed")
        end = pos + int(length)
        record = data[space + 1 : end]
        key, eq, value = record.partition(b"=")
        if end > len(data) or not eq or not record.endswith(b"\n"):
            raise TarStreamError(f"the PAX header at byte {start} is malformed")
        records[key.decode("utf-8", "replace")] = value[:-1].decode("utf-8", "surrogateescape")
        pos = end
    return records
