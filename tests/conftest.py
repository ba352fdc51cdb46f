"""Shared fixtures: a real anvil chain with the protocol deployed, isolated per test.

One anvil per test session; each test runs between ``evm_snapshot`` and ``evm_revert`` so
tests see a freshly deployed market without paying for a new chain each time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from market.chain.anvil import DEV_KEYS, Anvil, start_anvil
from market.chain.client import ChainClient
from market.chain.deploy import deploy
from market.chain.market import Market
from market.chain.types import Deployment, MarketParams


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[Anvil]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@dataclass
class Chain:
    """A deployed market and clients for the well-known development keys."""

    anvil: Anvil
    deployment: Deployment

    def client(self, index: int) -> ChainClient:
        return ChainClient(self.anvil.rpc_url, DEV_KEYS[index])

    def market(self, index: int) -> Market:
        return Market(self.client(index), self.deployment)

    def rpc(self, method: str, *params: object) -> object:
        w3 = self.client(0).w3
        return w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]

    def warp(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")


@pytest.fixture(scope="session")
def deployed(anvil_node: Anvil) -> Deployment:
    return deploy(ChainClient(anvil_node.rpc_url, DEV_KEYS[0]), MarketParams())


@pytest.fixture()
def chain(anvil_node: Anvil, deployed: Deployment) -> Iterator[Chain]:
    c = Chain(anvil_node, deployed)
    snap = c.rpc("evm_snapshot")
    try:
        yield c
    finally:
        c.rpc("evm_revert", snap)
