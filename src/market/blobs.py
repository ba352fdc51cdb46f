"""Content-addressed blob store: the name of a blob is the keccak256 of its bytes.

Outputs too large for calldata, inputs given by URI, and model artefacts live here. The
store refuses bytes that do not match the name they are stored under, and writes through a
temporary file and a rename, so a reader never sees half a blob. The market API serves the
same folder over HTTP (GET /blobs/{hash}); the URI stored on chain is that address.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from eth_utils.crypto import keccak

from market.errors import VerimarketError


class BlobError(VerimarketError):
    """A blob was refused or is missing."""


class BlobHashMismatch(BlobError):
    def __init__(self, expected: str, actual: str) -> None:
        self.expected, self.actual = expected, actual
        super().__init__(f"blob bytes hash to {actual}, not {expected}: refused")


class BlobTooLarge(BlobError):
    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"blob of {size} bytes is over the {limit}-byte limit")


class BlobNotFound(BlobError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no blob {name}")


def blob_name(data: bytes) -> str:
    return "0x" + keccak(data).hex()


def _check_name(name: str) -> str:
    n = name.lower()
    if not (n.startswith("0x") and len(n) == 66 and all(c in "0123456789abcdef" for c in n[2:])):
        raise BlobError(f"{name!r} is not a blob name (0x + 64 hex digits)")
    return n


class BlobStore:
    def __init__(self, root: Path, max_bytes: int = 16 << 20) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        n = _check_name(name)
        return self.root / n[2:4] / n[2:]

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; returns its name. With ``expected``, refuse bytes of another hash."""
        if len(data) > self.max_bytes:
            raise BlobTooLarge(len(data), self.max_bytes)
        name = blob_name(data)
        if expected is not None and _check_name(expected) != name:
            raise BlobHashMismatch(expected, name)
        target = self.path(name)
        if target.exists():
            return name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return name

    def get(self, name: str) -> bytes:
        p = self.path(name)
        if not p.exists():
            raise BlobNotFound(name)
        data = p.read_bytes()
        if blob_name(data) != _check_name(name):
            raise BlobHashMismatch(name, blob_name(data))
        return data

    def has(self, name: str) -> bool:
        return self.path(name).exists()
