"""Client side of the API's Sign-In with Ethereum, for services holding an eth_account key.

    api = ApiClient("http://127.0.0.1:8000", private_key)
    name = api.put_blob(output_bytes)      # signs in on first use, again when the token ends

The message names the host this client connects to (the EIP-4361 domain binding), so a
token is only ever minted for the server the caller meant to talk to.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from market.api.siwe import SiweMessage, rfc3339
from market.blobs import blob_name
from market.errors import VerimarketError

STATEMENT = "Sign in to the verimarket API."


class ApiAuthError(VerimarketError):
    """The API refused to sign this key in; the message carries the server's reason."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        self.url, self.status, self.reason = url, status, reason
        super().__init__(f"{url} refused sign-in ({status}): {reason}")


class ApiRequestError(VerimarketError):
    def __init__(self, method: str, url: str, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(f"{method} {url} failed ({status}): {reason}")


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail is not None else response.text[:200]


def build_message(
    account: LocalAccount,
    *,
    domain: str,
    uri: str,
    chain_id: int,
    nonce: str,
    lifetime_s: float = 3600,
    now: float | None = None,
) -> SiweMessage:
    now = time.time() if now is None else now
    return SiweMessage(
        domain=domain,
        address=account.address,
        uri=uri,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=rfc3339(now),
        expiration_time=rfc3339(now + lifetime_s),
        statement=STATEMENT,
    )


def sign_message(account: LocalAccount, message: SiweMessage) -> str:
    signed = account.sign_message(encode_defunct(text=message.to_text()))
    return "0x" + bytes(signed.signature).hex()


def sign_in(
    client: httpx.Client,
    account: LocalAccount,
    *,
    chain_id: int | None = None,
    lifetime_s: float = 3600,
) -> tuple[str, float]:
    """Sign ``account`` in through ``client`` (whose base_url is the API); (token, expiry)."""
    r = client.get("/auth/nonce")
    if r.status_code != 200:
        raise ApiAuthError(str(client.base_url), r.status_code, _reason(r))
    info = r.json()
    domain = client.build_request("GET", "/").headers["host"]
    msg = build_message(
        account,
        domain=domain,
        uri=str(client.base_url),
        chain_id=chain_id if chain_id is not None else int(info["chain_id"]),
        nonce=info["nonce"],
        lifetime_s=lifetime_s,
    )
    r = client.post(
        "/auth/verify", json={"message": msg.to_text(), "signature": sign_message(account, msg)}
    )
    if r.status_code != 200:
        raise ApiAuthError(str(client.base_url), r.status_code, _reason(r))
    body = r.json()
    return str(body["access_token"]), float(body["expires_at"])


class ApiClient:
    """An authenticated client of the market API (signs in lazily, re-signs before expiry)."""

    #: Sign in again when the token has less than this many seconds left.
    RENEW_MARGIN_S = 60

    def __init__(
        self,
        base_url: str,
        private_key: str | LocalAccount,
        *,
        chain_id: int | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        """``http``: a client to use instead of a new one (its base_url is the API's)."""
        self.account: LocalAccount = (
            private_key if isinstance(private_key, LocalAccount) else Account.from_key(private_key)
        )
        self.chain_id = chain_id
        self.http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        if self._token is None or self._expires - time.time() < self.RENEW_MARGIN_S:
            self._token, self._expires = sign_in(self.http, self.account, chain_id=self.chain_id)
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authenticated request; signs in again once if the server refuses the token."""
        for attempt in range(2):
            headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {self.token()}"}
            r = self.http.request(method, path, headers=headers, **kwargs)
            if r.status_code != 401 or attempt:
                return r
            self._token = None
        raise AssertionError("unreachable")

    def put_blob(self, data: bytes) -> str:
        """Upload ``data``; returns its name (keccak256). Raises ApiRequestError if refused."""
        name = blob_name(data)
        r = self.request(
            "PUT",
            f"/blobs/{name}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if r.status_code not in (200, 201):
            raise ApiRequestError("PUT", f"/blobs/{name}", r.status_code, _reason(r))
        return name

    def get_blob(self, name: str) -> bytes:
        r = self.http.get(f"/blobs/{name}")
        if r.status_code != 200:
            raise ApiRequestError("GET", f"/blobs/{name}", r.status_code, _reason(r))
        return r.content

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


__all__ = [
    "ApiAuthError",
    "ApiClient",
    "ApiRequestError",
    "build_message",
    "sign_in",
    "sign_message",
]
