"""Whole job lifecycles through web3 on a real anvil chain, every balance checked to the wei."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from market.chain.client import ChainClient
from market.chain.market import Market
from market.chain.types import JobRequest, JobStatus, Policy, Segment
from market.errors import ContractRevert, InsufficientFunds, RpcUnreachable

from ..conftest import Chain

pytestmark = pytest.mark.integration

ETH = 10**18
PRICE = 10**15  # 0.001 ETH per job
MAX_FEE = 2 * 10**15


def gas_cost(receipt: Any) -> int:
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def setup_model_and_node(chain: Chain) -> tuple[bytes, Market]:
    deployer = chain.market(0)
    model_id = deployer.register_model(
        keccak(b"digits-mlp artefacts"),
        16,
        "blob://digits-mlp",
        [Segment(keccak(b"segment-0")), Segment(keccak(b"segment-1"))],
    )
    node = chain.market(1)
    node.register_node(2 * ETH)
    node.set_model_price(model_id, PRICE)
    return model_id, node


def request(
    chain: Chain, model_id: bytes, *, vault_agent: str | None = None, max_fee: int = MAX_FEE
) -> JobRequest:
    data = b"\x01\x00\x01\x00\x00\x00\x02" + (7).to_bytes(8, "big") + (9).to_bytes(8, "big")
    now = int(chain.client(0).w3.eth.get_block("latest")["timestamp"])
    kwargs: dict[str, Any] = {}
    if vault_agent:
        kwargs["vault_agent"] = vault_agent
    return JobRequest(
        model_id=model_id,
        input_hash=keccak(data),
        input=data,
        max_fee=max_fee,
        deadline=now + 600,
        **kwargs,
    )


def test_vault_funded_job_full_lifecycle(chain: Chain) -> None:
    model_id, node = setup_model_and_node(chain)
    funder, agent, keeper = chain.market(2), chain.market(3), chain.market(5)
    agent_addr = agent.client.address
    params = chain.deployment.params
    policy = Policy(max_fee_per_job=MAX_FEE, budget_per_period=10 * MAX_FEE, period_length=3600)
    funder.open_account(agent_addr, policy, 50 * MAX_FEE, allowed_models=[model_id])
    assert funder.vault_balance(agent_addr) == 50 * MAX_FEE

    market_eth_before = chain.client(0).balance(chain.deployment.job_market)
    job_id = agent.submit_job(request(chain, model_id, vault_agent=agent_addr))
    assert agent.vault_balance(agent_addr) == 49 * MAX_FEE
    assert chain.client(0).balance(chain.deployment.job_market) == market_eth_before + MAX_FEE
    job = agent.job(job_id)
    assert (job.status, job.payer, job.from_vault) == (JobStatus.OPEN, agent_addr, True)

    node.claim_job(job_id)
    collateral = max(params.min_job_collateral, MAX_FEE * params.collateral_bps // 10_000)
    assert node.node_info(node.client.address).locked == collateral
    output = b"\x01\x10\x01\x00\x00\x00\x0a" + b"".join(i.to_bytes(8, "big") for i in range(10))
    node.commit_result(job_id, keccak(output), output)
    assert agent.job(job_id).status == JobStatus.COMMITTED

    with pytest.raises(ContractRevert) as err:
        keeper.finalize(job_id)
    assert err.value.name == "WindowNotOver"
    assert err.value.args_by_name["jobId"] == job_id

    chain.warp(params.challenge_window + 1)
    keeper.finalize(job_id)
    fee = PRICE * params.fee_bps // 10_000
    assert agent.job(job_id).status == JobStatus.SETTLED
    assert keeper.withdrawable(node.client.address) == PRICE - fee
    assert keeper.withdrawable(chain.deployment.treasury) == fee
    assert keeper.vault_balance(agent_addr) == 49 * MAX_FEE + (MAX_FEE - PRICE)
    assert node.node_info(node.client.address).locked == 0
    assert keeper.total_escrow() == 0

    before = node.client.balance(node.client.address)
    receipt = node.withdraw()
    after = node.client.balance(node.client.address)
    assert after == before + (PRICE - fee) - gas_cost(receipt)
    assert keeper.withdrawable(node.client.address) == 0
    # what the market still holds is exactly the treasury's fee
    assert chain.client(0).balance(chain.deployment.job_market) == market_eth_before + fee


def test_expired_claim_refunds_and_slashes(chain: Chain) -> None:
    model_id, node = setup_model_and_node(chain)
    payer, keeper = chain.market(6), chain.market(5)
    params = chain.deployment.params
    stake_before = node.node_info(node.client.address).stake

    job_id = payer.submit_job(request(chain, model_id))
    node.claim_job(job_id)
    chain.warp(601)
    with pytest.raises(ContractRevert) as err:
        node.commit_result(job_id, keccak(b"late"), b"late")
    assert err.value.name == "DeadlinePassed"

    keeper.expire(job_id)
    collateral = max(params.min_job_collateral, MAX_FEE * params.collateral_bps // 10_000)
    to_payer = collateral * params.slash_payer_bps // 10_000
    assert payer.job(job_id).status == JobStatus.EXPIRED
    assert payer.withdrawable(payer.client.address) == MAX_FEE + to_payer
    assert payer.withdrawable(keeper.client.address) == collateral - to_payer
    info = node.node_info(node.client.address)
    assert (info.stake, info.locked) == (stake_before - collateral, 0)
    assert payer.total_escrow() == 0

    before = payer.client.balance(payer.client.address)
    receipt = payer.withdraw()
    assert payer.client.balance(payer.client.address) == before + MAX_FEE + to_payer - gas_cost(
        receipt
    )


def test_policy_violations_are_refused_and_change_nothing(chain: Chain) -> None:
    model_id, _node = setup_model_and_node(chain)
    other_model = chain.market(0).register_model(keccak(b"other"), 16, "", [Segment(keccak(b"s"))])
    funder, agent, stranger = chain.market(2), chain.market(3), chain.market(4)
    agent_addr = agent.client.address
    policy = Policy(max_fee_per_job=MAX_FEE, budget_per_period=3 * MAX_FEE, period_length=3600)
    funder.open_account(agent_addr, policy, 10 * MAX_FEE, allowed_models=[model_id])
    jobs_before = agent.job_count()

    cases = [
        (agent, request(chain, other_model, vault_agent=agent_addr), "ModelNotAllowed"),
        (
            agent,
            request(chain, model_id, vault_agent=agent_addr, max_fee=MAX_FEE + 1),
            "FeeAbovePolicy",
        ),
        (stranger, request(chain, model_id, vault_agent=agent_addr), "SpenderNotAuthorized"),
    ]
    for who, req, error in cases:
        with pytest.raises(ContractRevert) as err:
            who.submit_job(req)
        assert err.value.name == error
    # the period budget: three jobs fit, the fourth does not
    for _ in range(3):
        agent.submit_job(request(chain, model_id, vault_agent=agent_addr))
    with pytest.raises(ContractRevert) as err:
        agent.submit_job(request(chain, model_id, vault_agent=agent_addr))
    assert err.value.name == "PeriodBudgetExceeded"
    assert err.value.args_by_name["remaining"] == 0
    assert agent.job_count() == jobs_before + 3
    assert agent.vault_balance(agent_addr) == 7 * MAX_FEE

    # a funded spender key may spend, once authorized by the funder
    chain.warp(3601)
    funder.client.transact(
        funder.vault.functions.setSpender(agent_addr, stranger.client.address, True)
    )
    stranger.submit_job(request(chain, model_id, vault_agent=agent_addr))
    assert agent.vault_balance(agent_addr) == 6 * MAX_FEE


def test_unreachable_rpc_and_unfunded_key_say_what_to_do(chain: Chain) -> None:
    with pytest.raises(RpcUnreachable, match="cannot reach the chain"):
        ChainClient("http://127.0.0.1:9", Account.create().key.hex()).block_number()
    broke = Market(ChainClient(chain.anvil.rpc_url, Account.create().key.hex()), chain.deployment)
    with pytest.raises(InsufficientFunds, match="Fund it"):
        broke.register_node(2 * ETH)
