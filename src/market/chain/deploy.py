"""Deploy the protocol contracts and bind them together."""

from __future__ import annotations

from market.chain.client import ChainClient
from market.chain.pipeline import deploy_pipeline
from market.chain.types import Deployment, MarketParams


def deploy(
    client: ChainClient, params: MarketParams | None = None, treasury: str | None = None
) -> Deployment:
    """Deploy ModelRegistry, NodeRegistry, PaymentVault, JobMarket, ZkVerification,
    PipelineJobs and RedundantJobs, then bind them.

    The deployer key pays; the treasury defaults to the deployer. Returns the deployment
    record (addresses, chain id, the block to start indexing from).
    """
    params = params or MarketParams()
    treasury = treasury or client.address
    start_block = client.block_number()
    models, _ = client.deploy("ModelRegistry")
    nodes, _ = client.deploy("NodeRegistry", models, params.min_stake, params.unbonding_period)
    vault, _ = client.deploy("PaymentVault", params.withdrawal_delay)
    market, _ = client.deploy(
        "JobMarket",
        nodes,
        models,
        vault,
        treasury,
        params.fee_bps,
        params.challenge_window,
        params.max_job_duration,
        params.collateral_bps,
        params.min_job_collateral,
        params.slash_payer_bps,
        params.max_callback_gas,
    )
    client.transact(client.contract("NodeRegistry", nodes).functions.setMarket(market))
    client.transact(client.contract("PaymentVault", vault).functions.setMarket(market))
    zk, _ = client.deploy(
        "ZkVerification",
        market,
        params.proof_window,
        params.challenge_delay,
        params.dispute_window,
        params.dispute_bond,
        params.arbitration_period,
    )
    client.transact(client.contract("JobMarket", market).functions.setVerification(zk))
    pipeline = deploy_pipeline(client, models, nodes)
    redundant, _ = client.deploy("RedundantJobs", nodes, models)
    return Deployment(
        chain_id=client.chain_id,
        rpc_url=client.rpc_url,
        start_block=start_block,
        model_registry=models,
        node_registry=nodes,
        payment_vault=vault,
        job_market=market,
        treasury=treasury,
        deployer=client.address,
        params=params,
        zk_verification=zk,
        pipeline_jobs=pipeline,
        redundant_jobs=redundant,
    )
