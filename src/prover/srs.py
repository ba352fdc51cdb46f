"""Structured reference strings: made locally (insecure, for development) or a ceremony file.

A KZG proving system needs an SRS: powers of a secret ``tau`` nobody may know. ``gen_srs``
makes one here from fresh randomness, so whoever ran it could have kept ``tau`` and forged
proofs: fine for development and tests, never for real money. Production uses a file from a
public ceremony (a powers-of-tau transcript converted to ezkl's format), given by path and
never downloaded. Keys and verifiers are bound to the exact SRS file they were made with, so
every party (node, settlement service, auditor) must use the same file; builds record its
sha256 and refuse a different one.

Never call ``ezkl.get_srs`` on these files: it checks them against the public SRS and deletes
them when they differ.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ezkl

from prover.errors import SrsError

_DIGESTS: dict[tuple[str, int, int], str] = {}


class SrsSource(Protocol):
    """Where the SRS file for a circuit of ``2^logrows`` rows comes from."""

    @property
    def label(self) -> str:
        """A short description recorded with every build ("insecure-local" / "ceremony")."""
        ...

    def path_for(self, logrows: int) -> Path:
        """A file holding an SRS of at least ``2^logrows`` points (made if need be)."""
        ...


@dataclass(frozen=True)
class LocalInsecureSrs:
    """SRS files made here with ``ezkl.gen_srs``, one per logrows, kept under ``folder``.

    INSECURE: whoever made the file could forge proofs. Development and tests only.
    """

    folder: Path

    @property
    def label(self) -> str:
        return "insecure-local"

    def path_for(self, logrows: int) -> Path:
        path = self.folder / f"insecure-k{logrows}.srs"
        if path.is_file():
            return path
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.is_file():
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                ezkl.gen_srs(str(tmp), logrows)
                os.replace(tmp, path)
        return path


@dataclass(frozen=True)
class CeremonySrs:
    """One SRS file from a public ceremony, provided by the operator; used for every logrows
    up to its own (ezkl takes the first ``2^logrows`` points)."""

    path: Path

    @property
    def label(self) -> str:
        return "ceremony"

    def path_for(self, logrows: int) -> Path:
        if not self.path.is_file():
            raise SrsError(f"the ceremony SRS file {self.path} does not exist")
        size = srs_logrows(self.path)
        if size < logrows:
            raise SrsError(
                f"the ceremony SRS {self.path} has 2^{size} points; this circuit needs "
                f"2^{logrows}. Provide a larger ceremony file."
            )
        return self.path


def srs_logrows(path: Path) -> int:
    """The logrows an SRS file was made for (ezkl writes it first, as a little-endian u32)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) != 4:
        raise SrsError(f"{path} is not an SRS file (too short)")
    return int.from_bytes(head, "little")


def srs_digest(path: Path) -> str:
    """sha256 of an SRS file (cached per path, size and modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]
