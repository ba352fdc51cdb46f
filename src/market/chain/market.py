"""Typed wrappers over the protocol contracts, bound to one client and deployment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3.logs import DISCARD as _DISCARD
from web3.types import TxReceipt

from market.chain.client import ChainClient
from market.chain.types import (
    ZERO_ADDRESS,
    Deployment,
    Dispute,
    DisputeKind,
    Job,
    JobRequest,
    NodeInfo,
    Policy,
    Segment,
    ZkJob,
    ZkParams,
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
        self._zk = (
            client.contract("ZkVerification", deployment.zk_verification)
            if deployment.zk_verification != ZERO_ADDRESS
            else None
        )

    @property
    def zk(self) -> Any:
        """The ZkVerification contract (raises when the deployment has none)."""
        if self._zk is None:
            raise ChainError("this deployment has no ZkVerification module")
        return self._zk

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

    # ------------------------------------------------------------------ zk jobs
    def submit_zk_job(
        self, request: JobRequest, params: ZkParams, *, value: int | None = None
    ) -> int:
        """Submit a zk-spot / zk-full job (``request.mode``) with its input boundary hash."""
        pay = request.max_fee if value is None and request.vault_agent == _ZERO else (value or 0)
        fn = self.jobs.functions.submitZkJob(request.as_tuple(), params.as_tuple())
        receipt = self.client.transact(fn, value=pay)
        return self.job_ids_from(receipt, "JobSubmitted")[0]

    def commit_zk_result(
        self,
        job_id: int,
        result_hash: bytes,
        boundary_hashes: Sequence[int],
        output: bytes = b"",
        output_uri: str = "",
    ) -> TxReceipt:
        """Commit a zk job's result with its k + 1 boundary hashes."""
        fn = self.jobs.functions.commitZkResult(
            job_id, result_hash, output, output_uri, [int(h) for h in boundary_hashes]
        )
        return self.client.transact(fn)

    def challenge(self, job_id: int) -> TxReceipt:
        """Draw (and pin) a zk-spot job's challenged segment once its seed block exists."""
        return self.client.transact(self.zk.functions.challenge(job_id))

    def required_segments(self, job_id: int) -> list[int]:
        """The segments the job must prove as of now ([] while the seed block is not mined)."""
        mask = int(self.client.call(self.zk.functions.requiredSegments(job_id)))
        return [i for i in range(64) if mask >> i & 1]

    def submit_proof(
        self, job_id: int, segment: int, proof: bytes, boundary_hashes: Sequence[int]
    ) -> TxReceipt:
        """Post segment ``segment``'s proof; ``boundary_hashes`` must be the committed ones."""
        fn = self.zk.functions.submitProof(
            job_id, segment, proof, [int(h) for h in boundary_hashes]
        )
        return self.client.transact(fn)

    def slash_unproven(self, job_id: int) -> TxReceipt:
        """Slash a zk job whose proofs are missing after its proof deadline."""
        return self.client.transact(self.zk.functions.slashUnproven(job_id))

    def publish_proof(self, job_id: int, uri: str) -> TxReceipt:
        return self.client.transact(self.zk.functions.publishProof(job_id, uri))

    def attest(self, job_id: int, valid: bool) -> TxReceipt:
        return self.client.transact(self.zk.functions.attest(job_id, valid))

    def dispute_attestation(self, job_id: int, bond: int | None = None) -> TxReceipt:
        fn = self.zk.functions.disputeAttestation(job_id)
        return self.client.transact(fn, value=self.dispute_bond() if bond is None else bond)

    def dispute_output(self, job_id: int, bond: int | None = None) -> TxReceipt:
        fn = self.zk.functions.disputeOutput(job_id)
        return self.client.transact(fn, value=self.dispute_bond() if bond is None else bond)

    def resolve_output_dispute(self, job_id: int, upheld: bool) -> TxReceipt:
        return self.client.transact(self.zk.functions.resolveOutputDispute(job_id, upheld))

    def dismiss_output_dispute(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.zk.functions.dismissOutputDispute(job_id))

    def set_attester(self, attester: str, allowed: bool = True) -> TxReceipt:
        return self.client.transact(self.zk.functions.setAttester(attester, allowed))

    def is_attester(self, account: str) -> bool:
        return bool(self.client.call(self.zk.functions.isAttester(account)))

    def zk_job(self, job_id: int) -> ZkJob:
        return ZkJob.from_tuple(job_id, self.client.call(self.zk.functions.getZkJob(job_id)))

    def dispute(self, job_id: int, kind: DisputeKind) -> Dispute:
        t = self.client.call(self.zk.functions.getDispute(job_id, int(kind)))
        return Dispute(t[0], int(t[1]), int(t[2]))

    def dispute_bond(self) -> int:
        return int(self.client.call(self.zk.functions.disputeBond()))

    def zk_withdrawable(self, account: str) -> int:
        """Dispute bonds owed to ``account`` by the module."""
        return int(self.client.call(self.zk.functions.withdrawable(account)))

    def zk_withdraw(self) -> TxReceipt:
        return self.client.transact(self.zk.functions.withdraw())

    # ------------------------------------------------------------------ events
    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        """Decoded ``name`` events of any of the protocol contracts in ``receipt``."""
        contracts = [self.jobs, self.nodes, self.vault, self.models]
        if self._zk is not None:
            contracts.append(self._zk)
        for contract in contracts:
            if any(e.get("name") == name and e.get("type") == "event" for e in contract.abi):
                logs = contract.events[name]().process_receipt(receipt, errors=_DISCARD)
                return [dict(log["args"]) for log in logs]
        raise ChainError(f"no contract has an event named {name}")

    def job_ids_from(self, receipt: TxReceipt, event: str) -> list[int]:
        return [int(e["jobId"]) for e in self.events(receipt, event)]


_ZERO = "0x0000000000000000000000000000000000000000"
