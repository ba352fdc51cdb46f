"""Typed wrappers over the four protocol contracts, bound to one client and deployment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3.logs import DISCARD as _DISCARD
from web3.types import TxReceipt

from market.chain.client import ChainClient
from market.chain.types import (
    Deployment,
    Job,
    JobRequest,
    NodeInfo,
    Policy,
    Segment,
)
from market.errors import ChainError


class Market:
    """The protocol as seen by one key: node, agent, funder and keeper operations."""

    def __init__(self, client: ChainClient, deployment: Deployment) -> None:
        self.client = client
        self.deployment = deployment
        self.models = client.contract("ModelRegistry", deployment.model_registry)
        self.nodes = client.contract("NodeRegistry", deployment.node_registry)
        self.vault = client.contract("PaymentVault", deployment.payment_vault)
        self.jobs = client.contract("JobMarket", deployment.job_market)

    def with_client(self, client: ChainClient) -> Market:
        """The same deployment seen through another key."""
        return Market(client, self.deployment)

    # ------------------------------------------------------------------ models
    def register_model(
        self,
        artifacts_hash: bytes,
        output_scale: int,
        metadata_uri: str,
        segments: Sequence[Segment],
    ) -> bytes:
        segs = [s.as_tuple() for s in segments]
        model_id = self.compute_model_id(artifacts_hash, output_scale, segments)
        if self.is_model_registered(model_id):
            return model_id
        self.client.transact(
            self.models.functions.registerModel(artifacts_hash, output_scale, metadata_uri, segs)
        )
        return model_id

    def compute_model_id(
        self, artifacts_hash: bytes, output_scale: int, segments: Sequence[Segment]
    ) -> bytes:
        segs = [s.as_tuple() for s in segments]
        return bytes(
            self.client.call(
                self.models.functions.computeModelId(artifacts_hash, output_scale, segs)
            )
        )

    def is_model_registered(self, model_id: bytes) -> bool:
        return bool(self.client.call(self.models.functions.isRegistered(model_id)))

    # ------------------------------------------------------------------ nodes
    def register_node(self, stake: int) -> TxReceipt:
        return self.client.transact(self.nodes.functions.register(), value=stake)

    def add_stake(self, amount: int) -> TxReceipt:
        return self.client.transact(self.nodes.functions.addStake(), value=amount)

    def set_model_price(self, model_id: bytes, price: int) -> TxReceipt:
        return self.client.transact(self.nodes.functions.setModelPrice(model_id, price))

    def request_unbond(self, amount: int) -> TxReceipt:
        return self.client.transact(self.nodes.functions.requestUnbond(amount))

    def withdraw_unbonded(self) -> TxReceipt:
        return self.client.transact(self.nodes.functions.withdrawUnbonded())

    def node_info(self, node: str) -> NodeInfo:
        t = self.client.call(self.nodes.functions.getNode(node))
        return NodeInfo(int(t[0]), int(t[1]), int(t[2]), int(t[3]), bool(t[4]))

    def price_of(self, node: str, model_id: bytes) -> int | None:
        served, price = self.client.call(self.nodes.functions.priceOf(node, model_id))
        return int(price) if served else None

    # ------------------------------------------------------------------ vault
    def open_account(
        self,
        agent: str,
        policy: Policy,
        deposit: int,
        allowed_models: Sequence[bytes] = (),
        spenders: Sequence[str] = (),
    ) -> TxReceipt:
        fn = self.vault.functions.openAccount(
            agent, policy.as_tuple(), list(allowed_models), list(spenders)
        )
        return self.client.transact(fn, value=deposit)

    def deposit(self, agent: str, amount: int) -> TxReceipt:
        return self.client.transact(self.vault.functions.deposit(agent), value=amount)

    def vault_balance(self, agent: str) -> int:
        return int(self.client.call(self.vault.functions.getAccount(agent))[1])

    # ------------------------------------------------------------------ jobs
    def submit_job(self, request: JobRequest, *, value: int | None = None) -> int:
        pay = request.max_fee if value is None and request.vault_agent == _ZERO else (value or 0)
        receipt = self.client.transact(self.jobs.functions.submitJob(request.as_tuple()), value=pay)
        return self.job_ids_from(receipt, "JobSubmitted")[0]

    def submit_jobs(self, requests: Sequence[JobRequest]) -> list[int]:
        value = sum(r.max_fee for r in requests if r.vault_agent == _ZERO)
        fn = self.jobs.functions.submitJobs([r.as_tuple() for r in requests])
        receipt = self.client.transact(fn, value=value)
        return self.job_ids_from(receipt, "JobSubmitted")

    def claim_job(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.jobs.functions.claimJob(job_id))

    def claim_jobs(self, job_ids: Sequence[int]) -> TxReceipt:
        return self.client.transact(self.jobs.functions.claimJobs(list(job_ids)))

    def commit_result(
        self, job_id: int, result_hash: bytes, output: bytes = b"", output_uri: str = ""
    ) -> TxReceipt:
        fn = self.jobs.functions.commitResult(job_id, result_hash, output, output_uri)
        return self.client.transact(fn)

    def commit_results(
        self,
        job_ids: Sequence[int],
        result_hashes: Sequence[bytes],
        outputs: Sequence[bytes],
        output_uris: Sequence[str],
    ) -> TxReceipt:
        fn = self.jobs.functions.commitResults(
            list(job_ids), list(result_hashes), list(outputs), list(output_uris)
        )
        return self.client.transact(fn)

    def finalize(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.jobs.functions.finalize(job_id))

    def finalize_many(self, job_ids: Sequence[int]) -> TxReceipt:
        return self.client.transact(self.jobs.functions.finalizeMany(list(job_ids)))

    def expire(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.jobs.functions.expire(job_id))

    def expire_many(self, job_ids: Sequence[int]) -> TxReceipt:
        return self.client.transact(self.jobs.functions.expireMany(list(job_ids)))

    def cancel(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.jobs.functions.cancel(job_id))

    def withdraw(self) -> TxReceipt:
        return self.client.transact(self.jobs.functions.withdraw())

    def withdrawable(self, account: str) -> int:
        return int(self.client.call(self.jobs.functions.withdrawable(account)))

    def job(self, job_id: int) -> Job:
        return Job.from_tuple(job_id, self.client.call(self.jobs.functions.getJob(job_id)))

    def job_count(self) -> int:
        return int(self.client.call(self.jobs.functions.jobCount()))

    def total_escrow(self) -> int:
        return int(self.client.call(self.jobs.functions.totalEscrow()))

    # ------------------------------------------------------------------ events
    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        """Decoded ``name`` events of any of the four contracts in ``receipt``."""
        for contract in (self.jobs, self.nodes, self.vault, self.models):
            if any(e.get("name") == name and e.get("type") == "event" for e in contract.abi):
                logs = contract.events[name]().process_receipt(receipt, errors=_DISCARD)
                return [dict(log["args"]) for log in logs]
        raise ChainError(f"no contract has an event named {name}")

    def job_ids_from(self, receipt: TxReceipt, event: str) -> list[int]:
        return [int(e["jobId"]) for e in self.events(receipt, event)]


_ZERO = "0x0000000000000000000000000000000000000000"
