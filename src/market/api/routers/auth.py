"""Sign-In with Ethereum: nonce, verify (→ session token), and who am I."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request

from market.api.deps import ContextDep, CurrentIdentity
from market.api.schemas import IdentityOut, NonceOut, TokenOut, VerifyIn, error_responses
from market.api.siwe import AuthError, rfc3339, verify_sign_in

router = APIRouter(prefix="/auth", tags=["auth"])


def expected_domain(ctx: ContextDep, request: Request) -> str:
    return ctx.settings.api_domain or request.headers.get("host") or request.url.netloc


@router.get("/nonce", response_model=NonceOut)
def get_nonce(ctx: ContextDep, request: Request) -> NonceOut:
    """A fresh single-use nonce, and the domain, URI and chain id the message must name."""
    now = time.time()
    nonce, expires = ctx.nonces.issue(now)
    return NonceOut(
        nonce=nonce,
        domain=expected_domain(ctx, request),
        uri=str(request.base_url),
        chain_id=ctx.chain_id,
        issued_at=rfc3339(now),
        expires_at=rfc3339(expires),
    )


@router.post("/verify", response_model=TokenOut, responses=error_responses(400, 401, 413))
def verify(body: VerifyIn, ctx: ContextDep, request: Request) -> TokenOut:
    """Check a signed EIP-4361 message and return a short-lived session token.

    Refused (401, with the reason) when the message is malformed, names another domain or
    chain, is signed by another key, has expired or is not yet valid, or its nonce was not
    issued here, has expired or was already used.
    """
    try:
        who = verify_sign_in(
            body.message,
            body.signature,
            domain=expected_domain(ctx, request),
            chain_id=ctx.chain_id,
            nonces=ctx.nonces,
        )
    except AuthError as exc:
        raise HTTPException(401, exc.reason) from None
    ident = ctx.tokens.issue(who.address, who.chain_id, not_after=who.expires_at)
    return TokenOut(
        access_token=ctx.tokens.encode(ident),
        address=ident.address,
        chain_id=ident.chain_id,
        expires_at=ident.expires_at,
    )


@router.get("/me", response_model=IdentityOut, responses=error_responses(401))
def me(ident: CurrentIdentity) -> IdentityOut:
    """The identity the bearer token carries."""
    return IdentityOut(address=ident.address, chain_id=ident.chain_id, expires_at=ident.expires_at)
