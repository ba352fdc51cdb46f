"""Sign-In with Ethereum (EIP-4361): the message, its parser, and the server-side checks.

A client asks ``GET /auth/nonce`` for a single-use nonce, signs an EIP-4361 message naming
this server's domain, its address, the chain id, the nonce, when it was issued and when it
expires (EIP-191 ``personal_sign``), and trades it at ``POST /auth/verify`` for a short-lived
session token. The signer is the on-chain identity (a node operator's or an agent's key).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_address, to_checksum_address
from eth_utils.exceptions import ValidationError

from market.errors import VerimarketError

#: How far a client's clock may run ahead of ours when it says when it issued a message.
CLOCK_SKEW_S = 60

_HEADER = re.compile(
    r"^(?:(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://)?(?P<domain>\S+) wants you to "
    r"sign in with your Ethereum account:$"
)
_FIELDS = {
    "URI": "uri",
    "Version": "version",
    "Chain ID": "chain_id",
    "Nonce": "nonce",
    "Issued At": "issued_at",
    "Expiration Time": "expiration_time",
    "Not Before": "not_before",
    "Request ID": "request_id",
}
_NONCE = re.compile(r"^[A-Za-z0-9]{8,}$")


class AuthError(VerimarketError):
    """A sign-in or a session token was refused; ``reason`` says why (sent back with 401)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, what: str) -> float:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise AuthError(f"{what} {text!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise AuthError(f"{what} {text!r} has no time zone")
    return dt.timestamp()


@dataclass(frozen=True)
class SiweMessage:
    """The fields of an EIP-4361 message (times as RFC 3339 strings, as signed)."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: str
    expiration_time: str | None = None
    statement: str | None = None
    version: str = "1"
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = field(default_factory=tuple)
    scheme: str | None = None

    def to_text(self) -> str:
        prefix = f"{self.scheme}://" if self.scheme else ""
        lines = [
            f"{prefix}{self.domain} wants you to sign in with your Ethereum account:",
            self.address,
            "",
        ]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {self.issued_at}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {self.expiration_time}")
        if self.not_before is not None:
            lines.append(f"Not Before: {self.not_before}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        """Parse an EIP-4361 message; raises AuthError saying what is wrong with it."""
        lines = text.split("\n")
        if len(lines) < 6:
            raise AuthError("malformed sign-in message: too short for EIP-4361")
        header = _HEADER.match(lines[0])
        if header is None:
            raise AuthError("malformed sign-in message: the first line is not an EIP-4361 header")
        address = lines[1]
        if not is_address(address) or not address.startswith("0x"):
            raise AuthError(
                f"malformed sign-in message: {address!r} is not an address "
                "(0x + 40 hex digits, EIP-55 checksummed when mixed case)"
            )
        if lines[2] != "":
            raise AuthError("malformed sign-in message: a blank line must follow the address")
        i, statement = 3, None
        if lines[i] != "":
            statement, i = lines[i], i + 1
        if i >= len(lines) or lines[i] != "":
            raise AuthError("malformed sign-in message: a blank line must precede 'URI:'")
        values: dict[str, str] = {}
        resources: list[str] = []
        rest = lines[i + 1 :]
        for j, line in enumerate(rest):
            if line == "Resources:":
                for r in rest[j + 1 :]:
                    if not r.startswith("- "):
                        raise AuthError(f"malformed sign-in message: bad resource line {r!r}")
                    resources.append(r[2:])
                break
            key, sep, value = line.partition(": ")
            if not sep or key not in _FIELDS:
                raise AuthError(f"malformed sign-in message: unexpected line {line!r}")
            if _FIELDS[key] in values:
                raise AuthError(f"malformed sign-in message: {key!r} given twice")
            values[_FIELDS[key]] = value
        for needed in ("uri", "version", "chain_id", "nonce", "issued_at"):
            if needed not in values:
                raise AuthError(f"malformed sign-in message: no {needed.replace('_', ' ')}")
        if values["version"] != "1":
            raise AuthError(f"malformed sign-in message: version {values['version']!r}, not '1'")
        if not values["chain_id"].isdigit():
            raise AuthError(f"malformed sign-in message: chain id {values['chain_id']!r}")
        if not _NONCE.match(values["nonce"]):
            raise AuthError("malformed sign-in message: the nonce must be 8+ letters or digits")
        return cls(
            domain=header["domain"],
            address=to_checksum_address(address),
            uri=values["uri"],
            chain_id=int(values["chain_id"]),
            nonce=values["nonce"],
            issued_at=values["issued_at"],
            expiration_time=values.get("expiration_time"),
            statement=statement,
            version=values["version"],
            not_before=values.get("not_before"),
            request_id=values.get("request_id"),
            resources=tuple(resources),
            scheme=header["scheme"],
        )


class NonceStore:
    """Server nonces: issued with an expiry, consumed once. In-process and thread-safe.

    Used nonces are remembered until they would have expired, so a replay is named as one.
    Several API processes need sticky sessions or one shared store (see docs/api.md).
    """

    def __init__(self, ttl_s: float, max_outstanding: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_outstanding = max_outstanding
        self._lock = threading.Lock()
        self._issued: dict[str, float] = {}
        self._used: dict[str, float] = {}

    def issue(self, now: float | None = None) -> tuple[str, float]:
        now = time.time() if now is None else now
        nonce = secrets.token_hex(16)
        with self._lock:
            if len(self._issued) >= self.max_outstanding:
                self._purge(now)
            if len(self._issued) >= self.max_outstanding:
                # Drop the oldest outstanding nonce rather than grow without bound.
                self._issued.pop(next(iter(self._issued)))
            self._issued[nonce] = now + self.ttl_s
        return nonce, now + self.ttl_s

    def consume(self, nonce: str, now: float | None = None) -> None:
        """Mark ``nonce`` used; raises AuthError when it was never issued, is used or expired."""
        now = time.time() if now is None else now
        with self._lock:
            if nonce in self._used:
                raise AuthError(f"nonce {nonce} was already used: replay refused")
            expires = self._issued.pop(nonce, None)
            if expires is None:
                raise AuthError(
                    f"nonce {nonce} was not issued by this server (or has been "
                    "forgotten): ask GET /auth/nonce for a fresh one"
                )
            self._used[nonce] = expires
            if expires <= now:
                raise AuthError(f"nonce {nonce} expired at {rfc3339(expires)}: ask for a new one")
            if len(self._used) > self.max_outstanding:
                self._purge(now)

    def _purge(self, now: float) -> None:
        for store in (self._issued, self._used):
            for k in [k for k, exp in store.items() if exp <= now]:
                del store[k]


@dataclass(frozen=True)
class SignIn:
    """Who signed in, on which chain, and until when their message stays valid."""

    address: str
    chain_id: int
    expires_at: float


_SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def recover_signer(message: str, signature: str) -> str:
    """The address that signed ``message`` (EIP-191). Only canonical signatures count:
    v is 27/28 (or 0/1, as some wallets write it) and s is in the lower half of the curve
    order (EIP-2), so a signature has exactly two spellings, never hundreds."""
    try:
        sig = bytes.fromhex(signature.removeprefix("0x"))
        if len(sig) != 65:
            raise ValueError("length")
    except (ValueError, TypeError):
        raise AuthError("malformed signature: expected 65 bytes as 0x-hex (r, s, v)") from None
    if sig[64] not in (0, 1, 27, 28):
        raise AuthError(f"non-canonical signature: v is {sig[64]}, expected 27 or 28 (or 0 or 1)")
    if int.from_bytes(sig[32:64], "big") > _SECP256K1_HALF_N:
        raise AuthError("non-canonical signature: s is in the upper half of the curve order")
    try:
        return str(Account.recover_message(encode_defunct(text=message), signature=sig))
    except (ValueError, TypeError, BadSignature, ValidationError):
        raise AuthError("malformed signature: expected 65 bytes as 0x-hex (r, s, v)") from None


def verify_sign_in(
    text: str,
    signature: str,
    *,
    domain: str,
    chain_id: int,
    nonces: NonceStore,
    now: float | None = None,
) -> SignIn:
    """Check a signed EIP-4361 message; returns who signed in or raises AuthError.

    The nonce is consumed only once everything else holds, so a refused attempt cannot burn
    another client's nonce.
    """
    now = time.time() if now is None else now
    msg = SiweMessage.parse(text)
    if msg.domain != domain:
        raise AuthError(f"message is for domain {msg.domain!r}, this server is {domain!r}")
    if msg.chain_id != chain_id:
        raise AuthError(
            f"message names chain id {msg.chain_id}, this server serves chain {chain_id}"
        )
    signer = recover_signer(text, signature)
    if signer != msg.address:
        raise AuthError(f"signature is by {signer}, not by the message's address {msg.address}")
    if msg.expiration_time is None:
        raise AuthError("message has no Expiration Time: this server requires one")
    issued = parse_time(msg.issued_at, "Issued At")
    expires = parse_time(msg.expiration_time, "Expiration Time")
    if issued > now + CLOCK_SKEW_S:
        raise AuthError(f"message is issued in the future ({msg.issued_at})")
    if expires <= now:
        raise AuthError(f"message expired at {msg.expiration_time}")
    if msg.not_before is not None and parse_time(msg.not_before, "Not Before") > now:
        raise AuthError(f"message is not valid before {msg.not_before}")
    nonces.consume(msg.nonce, now)
    return SignIn(msg.address, msg.chain_id, expires)
