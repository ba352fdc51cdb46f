"""API session tokens: HMAC-SHA256-signed, short-lived, stateless.

A token is ``base64url(payload).base64url(mac)``; the payload names the signed-in address,
the chain id and the expiry. Any API process holding the same secret accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from eth_utils.address import is_checksum_address

from market.api.siwe import AuthError, rfc3339


@dataclass(frozen=True)
class Identity:
    """Who a request is from: the on-chain address that signed in, on which chain."""

    address: str
    chain_id: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes | None, ttl_s: int) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(
        self, address: str, chain_id: int, not_after: float | None = None, now: float | None = None
    ) -> Identity:
        """A token for ``address``; it lives ``ttl_s`` at most, and never past ``not_after``."""
        now = time.time() if now is None else now
        exp = int(now + self.ttl_s)
        if not_after is not None:
            exp = min(exp, int(not_after))
        return Identity(address, chain_id, exp)

    def encode(self, ident: Identity) -> str:
        payload = json.dumps(
            {
                "sub": ident.address,
                "cid": ident.chain_id,
                "exp": ident.expires_at,
                "jti": secrets.token_hex(8),
            },
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, chain_id: int, now: float | None = None) -> Identity:
        """The identity ``token`` carries; raises AuthError if forged, expired or off-chain."""
        now = time.time() if now is None else now
        try:
            body, mac = token.split(".")
            payload = _unb64(body)
            good = hmac.compare_digest(_unb64(mac), self._mac(payload))
        except (ValueError, TypeError):
            raise AuthError("malformed session token") from None
        if not good:
            raise AuthError(
                "session token signature is invalid (forged, or issued by another server)"
            )
        try:
            doc = json.loads(payload)
            ident = Identity(str(doc["sub"]), int(doc["cid"]), int(doc["exp"]))
        except (ValueError, KeyError, TypeError):
            raise AuthError("malformed session token") from None
        if not is_checksum_address(ident.address):
            raise AuthError("malformed session token")
        if ident.chain_id != chain_id:
            raise AuthError(f"session token is for chain {ident.chain_id}, not {chain_id}")
        if ident.expires_at <= now:
            raise AuthError(f"session token expired at {rfc3339(ident.expires_at)}: sign in again")
        return ident
