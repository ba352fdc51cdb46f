"""Signatures the API must refuse, fuzzed: any change to a signed sign-in message or to its
signature, replays in every form (verbatim, malleated, re-encoded), and the refusal of one
attempt never burning the nonce of the honest one. (The table of replayed / expired /
wrong-signer / wrong-chain refusals is in test_api.py; verimarket has no EIP-712 path: the
contracts verify no signatures, the API's sign-in is EIP-191 / EIP-4361.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from market.api.app import create_app

from .test_api import KEYS, make_db, make_settings, signed

pytestmark = pytest.mark.integration
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    s = make_settings(tmp_path_factory.mktemp("sig"))
    with TestClient(create_app(s, engine=make_db(s))) as c:
        yield c


def malleate(signature: str) -> str:
    """The other valid (r, n - s, v ^ 1) form of an ECDSA signature."""
    sig = bytes.fromhex(signature.removeprefix("0x"))
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    flipped = {27: 28, 28: 27, 0: 1, 1: 0}[v]
    return "0x" + (r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([flipped])).hex()


def verify(api: TestClient, body: dict[str, str]) -> tuple[int, str]:
    r = api.post("/auth/verify", json=body)
    assert r.status_code != 500, r.text
    detail = r.json().get("detail") if r.status_code != 200 else ""
    return r.status_code, str(detail)


@FUZZ
@given(
    key=st.integers(0, 3),
    where=st.floats(0, 1, exclude_max=True),
    char=st.characters(min_codepoint=32, max_codepoint=126),
)
def test_any_change_to_the_message_is_refused(
    api: TestClient, key: int, where: float, char: str
) -> None:
    body = signed(api, KEYS[key])
    text = body["message"]
    i = int(where * len(text))
    assume(text[i] != char)
    tampered = {**body, "message": text[:i] + char + text[i + 1 :]}
    status, detail = verify(api, tampered)
    assert status in (401, 422) and detail, (status, tampered["message"])
    # the refusal did not burn the nonce: the honest message still signs in, once
    assert verify(api, body)[0] == 200
    assert "replay" in verify(api, body)[1]


@FUZZ
@given(key=st.integers(0, 3), byte=st.integers(0, 64), xor=st.integers(1, 255))
def test_any_change_to_the_signature_is_refused(
    api: TestClient, key: int, byte: int, xor: int
) -> None:
    body = signed(api, KEYS[key])
    sig = bytearray(bytes.fromhex(body["signature"][2:]))
    v = sig[64]
    sig[byte] ^= xor
    # v = 0/1 and v = 27/28 are two encodings of the same recovery id (wallets emit both):
    # the same signature by the same key, not a change to it
    assume(byte != 64 or sig[64] not in {v % 27, v % 27 + 27})
    status, detail = verify(api, {**body, "signature": "0x" + sig.hex()})
    assert status == 401 and ("signature" in detail), detail
    assert verify(api, body)[0] == 200


@FUZZ
@given(key=st.integers(0, 3), other=st.integers(0, 3))
def test_replays_in_every_form_are_refused(api: TestClient, key: int, other: int) -> None:
    body = signed(api, KEYS[key])
    assert verify(api, body)[0] == 200
    sig = body["signature"]
    for variant in (
        sig,  # verbatim
        sig.removeprefix("0x"),  # without the prefix
        "0x" + sig[2:].upper(),  # other hex case
        malleate(sig),  # the other (r, n - s) form of the same signature
    ):
        status, detail = verify(api, {**body, "signature": variant})
        assert status in (401, 422), (variant, detail)  # 422: not 0x-hex of 65 bytes
        assert "replay" in detail or "signature" in detail, detail
    # another key's valid signature over the used message is refused too
    resigned = signed(api, KEYS[key], signer=KEYS[other])
    if other != key:
        assert "signature is by" in verify(api, resigned)[1]


def test_a_used_message_stays_refused_after_its_nonce_would_have_expired(
    tmp_path: Path,
) -> None:
    s = make_settings(tmp_path, api_nonce_ttl_s=1)
    with TestClient(create_app(s, engine=make_db(s))) as c:
        body = signed(c, KEYS[0])
        assert verify(c, body)[0] == 200
        status, detail = verify(c, body)
        assert status == 401 and "replay" in detail
        # a message signed in time but presented after the nonce's lifetime is refused too
        late = signed(c, KEYS[1])
        time.sleep(1.1)
        status, detail = verify(c, late)
        assert status == 401 and "expired" in detail
        status, detail = verify(c, body)
        assert status == 401, detail


def test_only_canonical_signatures_sign_in(api: TestClient) -> None:
    """A signature has exactly two spellings (v as 27/28 or 0/1); every other v byte and the
    high-s twin (r, n - s) are refused, even over a fresh nonce that no one has used."""
    refused = accepted = 0
    for v in range(256):
        body = signed(api, KEYS[0])
        sig = bytearray(bytes.fromhex(body["signature"][2:]))
        honest_v = sig[64]
        sig[64] = v
        status, detail = verify(api, {**body, "signature": "0x" + sig.hex()})
        if v in (honest_v % 27, honest_v % 27 + 27):  # each sign-in's own v: 0-4 in all
            assert status == 200, (v, detail)
            accepted += 1
        else:
            assert status == 401 and "signature" in detail, (v, status, detail)
            refused += 1
    assert refused == 256 - accepted and accepted <= 4
    body = signed(api, KEYS[1])
    status, detail = verify(api, {**body, "signature": malleate(body["signature"])})
    assert status == 401 and "upper half" in detail, detail
    assert verify(api, body)[0] == 200  # the canonical form of the same signature still works
