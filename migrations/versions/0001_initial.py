"""Initial schema: the chain index, chain transactions, blobs and proofs.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 14:35:48.702251
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

#: Wei amounts: NUMERIC(78, 0) on PostgreSQL, zero-padded decimal strings on SQLite
#: (market.db.models.Wei converts both ways).
WEI = sa.Numeric(78, 0).with_variant(sa.String(78), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_table(
        "chain_transactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=42), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("to_address", sa.String(length=42), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("value", sa.String(length=80), nullable=False),
        sa.Column("gas_limit", sa.Integer(), nullable=True),
        sa.Column("nonce", sa.Integer(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "UNSTARTED",
                "SIGNED",
                "SENT",
                "CONFIRMED",
                "FAILED",
                name="txstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("max_fee_per_gas", sa.String(length=80), nullable=True),
        sa.Column("max_priority_fee_per_gas", sa.String(length=80), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("all_hashes", sa.JSON(), nullable=False),
        sa.Column("broadcasts", sa.Integer(), nullable=False),
        sa.Column("bumps", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.Integer(), nullable=True),
        sa.Column("gas_used", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("revert_data", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender", "idempotency_key", name="uq_chain_tx_sender_key"),
        sa.UniqueConstraint("sender", "nonce", name="uq_chain_tx_sender_nonce"),
    )
    with op.batch_alter_table("chain_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_chain_tx_sender_state", ["sender", "state"], unique=False)

    op.create_table(
        "indexed_blocks",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.Column("parent_hash", sa.String(length=66), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "number"),
    )
    op.create_table(
        "indexer_cursors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("deployment", sa.String(length=42), nullable=False, comment="JobMarket address"),
        sa.Column("start_block", sa.BigInteger(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False, comment="last block fully indexed"),
        sa.Column("block_hash", sa.String(length=66), nullable=True),
        sa.Column("head", sa.BigInteger(), nullable=False, comment="chain head last seen"),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.Column("confirmed_block", sa.BigInteger(), nullable=False),
        sa.Column("reorgs", sa.Integer(), nullable=False, comment="reorgs handled so far"),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id", "deployment", name="uq_cursor_deployment"),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "NONE",
                "OPEN",
                "CLAIMED",
                "COMMITTED",
                "DISPUTED",
                "SETTLED",
                "SLASHED",
                "CANCELLED",
                "EXPIRED",
                name="jobstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("from_vault", sa.Boolean(), nullable=False),
        sa.Column("mode", sa.Integer(), nullable=False, comment="VerificationMode"),
        sa.Column("model_id", sa.String(length=66), nullable=False),
        sa.Column("input_hash", sa.String(length=66), nullable=False),
        sa.Column("input", sa.LargeBinary(), nullable=True),
        sa.Column("input_uri", sa.Text(), nullable=False),
        sa.Column("max_fee", WEI, nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("callback", sa.String(length=42), nullable=False),
        sa.Column("callback_gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("callback_failed", sa.Boolean(), nullable=False),
        sa.Column("node", sa.String(length=42), nullable=True),
        sa.Column("price", WEI, nullable=True),
        sa.Column("collateral", WEI, nullable=True),
        sa.Column("result_hash", sa.String(length=66), nullable=True),
        sa.Column("output", sa.LargeBinary(), nullable=True),
        sa.Column("output_uri", sa.Text(), nullable=True),
        sa.Column("window_end", sa.BigInteger(), nullable=True),
        sa.Column("node_payout", WEI, nullable=True),
        sa.Column("fee", WEI, nullable=True),
        sa.Column("refund", WEI, nullable=True),
        sa.Column("slashed", WEI, nullable=True),
        sa.Column("compensation", WEI, nullable=True),
        sa.Column("submit_block", sa.BigInteger(), nullable=False),
        sa.Column("claim_block", sa.BigInteger(), nullable=True),
        sa.Column("commit_block", sa.BigInteger(), nullable=True),
        sa.Column("settle_block", sa.BigInteger(), nullable=True),
        sa.Column("submitted_at", sa.BigInteger(), nullable=False),
        sa.Column("claimed_at", sa.BigInteger(), nullable=True),
        sa.Column("committed_at", sa.BigInteger(), nullable=True),
        sa.Column("settled_at", sa.BigInteger(), nullable=True),
        sa.Column("submit_tx", sa.String(length=66), nullable=False),
        sa.Column("claim_tx", sa.String(length=66), nullable=True),
        sa.Column("commit_tx", sa.String(length=66), nullable=True),
        sa.Column("settle_tx", sa.String(length=66), nullable=True),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_confirmed", ["confirmed", "updated_block"], unique=False)
        batch_op.create_index("ix_jobs_model", ["model_id"], unique=False)
        batch_op.create_index("ix_jobs_node", ["node"], unique=False)
        batch_op.create_index("ix_jobs_payer", ["payer"], unique=False)
        batch_op.create_index("ix_jobs_status", ["status"], unique=False)

    op.create_table(
        "models",
        sa.Column("model_id", sa.String(length=66), nullable=False),
        sa.Column("owner", sa.String(length=42), nullable=False),
        sa.Column("artifacts_hash", sa.String(length=66), nullable=False),
        sa.Column("output_scale", sa.Integer(), nullable=False),
        sa.Column("segment_count", sa.Integer(), nullable=False),
        sa.Column("metadata_uri", sa.Text(), nullable=False),
        sa.Column("registered_block", sa.BigInteger(), nullable=False),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("model_id"),
    )
    op.create_table(
        "node_models",
        sa.Column("node", sa.String(length=42), nullable=False),
        sa.Column("model_id", sa.String(length=66), nullable=False),
        sa.Column("price", WEI, nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node", "model_id"),
    )
    with op.batch_alter_table("node_models", schema=None) as batch_op:
        batch_op.create_index("ix_node_models_model", ["model_id"], unique=False)

    op.create_table(
        "nodes",
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("stake", WEI, nullable=False),
        sa.Column("locked", WEI, nullable=False),
        sa.Column("unbonding", WEI, nullable=False),
        sa.Column("unbonding_ready_at", sa.BigInteger(), nullable=False),
        sa.Column("jobs_claimed", sa.Integer(), nullable=False),
        sa.Column("jobs_served", sa.Integer(), nullable=False),
        sa.Column("earnings", WEI, nullable=False),
        sa.Column("slashes", sa.Integer(), nullable=False),
        sa.Column("slashed_total", WEI, nullable=False),
        sa.Column("registered_block", sa.BigInteger(), nullable=True),
        sa.Column("registered_at", sa.BigInteger(), nullable=True),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("address"),
    )
    op.create_table(
        "proofs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("node", sa.String(length=42), nullable=False),
        sa.Column("segment_index", sa.Integer(), nullable=False),
        sa.Column("proof_blob", sa.String(length=66), nullable=True),
        sa.Column("proof_size", sa.BigInteger(), nullable=True),
        sa.Column("instances", sa.JSON(), nullable=True),
        sa.Column("prove_seconds", sa.Float(), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("verifier", sa.String(length=16), nullable=True),
        sa.Column("verify_gas", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "node", "segment_index", name="uq_proof_job_segment"),
    )
    with op.batch_alter_table("proofs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_proofs_job_id"), ["job_id"], unique=False)

    op.create_table(
        "raw_events",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("contract", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("node", sa.String(length=42), nullable=True),
        sa.Column("agent", sa.String(length=42), nullable=True),
        sa.Column("model_id", sa.String(length=66), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "tx_hash", "log_index"),
    )
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.create_index("ix_raw_events_agent", ["agent"], unique=False)
        batch_op.create_index("ix_raw_events_job", ["job_id"], unique=False)
        batch_op.create_index("ix_raw_events_model", ["model_id"], unique=False)
        batch_op.create_index("ix_raw_events_node", ["node"], unique=False)
        batch_op.create_index(
            "ix_raw_events_order", ["chain_id", "block_number", "log_index"], unique=False
        )

    op.create_table(
        "vault_accounts",
        sa.Column("agent", sa.String(length=42), nullable=False),
        sa.Column("funder", sa.String(length=42), nullable=False),
        sa.Column("balance", WEI, nullable=False),
        sa.Column("max_fee_per_job", WEI, nullable=False),
        sa.Column("budget_per_period", WEI, nullable=False),
        sa.Column("period_length", sa.BigInteger(), nullable=False),
        sa.Column("any_model", sa.Boolean(), nullable=False),
        sa.Column("spent", WEI, nullable=False),
        sa.Column("refunded", WEI, nullable=False),
        sa.Column("withdrawn", WEI, nullable=False),
        sa.Column("pending_withdrawal", WEI, nullable=False),
        sa.Column("withdrawal_ready_at", sa.BigInteger(), nullable=False),
        sa.Column("opened_block", sa.BigInteger(), nullable=False),
        sa.Column("updated_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("agent"),
    )
    op.create_table(
        "model_segments",
        sa.Column("model_id", sa.String(length=66), nullable=False),
        sa.Column("index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("segment_hash", sa.String(length=66), nullable=False),
        sa.Column("vk_hash", sa.String(length=66), nullable=False),
        sa.Column("verifier", sa.String(length=42), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.model_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "index"),
    )
    op.create_table(
        "results",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("node", sa.String(length=42), nullable=False),
        sa.Column("result_hash", sa.String(length=66), nullable=False),
        sa.Column("output", sa.LargeBinary(), nullable=True),
        sa.Column("output_uri", sa.Text(), nullable=False),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("committed_at", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "node"),
    )
    op.create_table(
        "settlements",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("node", sa.String(length=42), nullable=True),
        sa.Column("node_payout", WEI, nullable=False),
        sa.Column("fee", WEI, nullable=False),
        sa.Column("refund", WEI, nullable=False),
        sa.Column("slashed", WEI, nullable=False),
        sa.Column("compensation", WEI, nullable=False),
        sa.Column("caller", sa.String(length=42), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )


def downgrade() -> None:
    op.drop_table("settlements")
    op.drop_table("results")
    op.drop_table("model_segments")
    op.drop_table("vault_accounts")
    with op.batch_alter_table("raw_events", schema=None) as batch_op:
        batch_op.drop_index("ix_raw_events_order")
        batch_op.drop_index("ix_raw_events_node")
        batch_op.drop_index("ix_raw_events_model")
        batch_op.drop_index("ix_raw_events_job")
        batch_op.drop_index("ix_raw_events_agent")

    op.drop_table("raw_events")
    with op.batch_alter_table("proofs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_proofs_job_id"))

    op.drop_table("proofs")
    op.drop_table("nodes")
    with op.batch_alter_table("node_models", schema=None) as batch_op:
        batch_op.drop_index("ix_node_models_model")

    op.drop_table("node_models")
    op.drop_table("models")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status")
        batch_op.drop_index("ix_jobs_payer")
        batch_op.drop_index("ix_jobs_node")
        batch_op.drop_index("ix_jobs_model")
        batch_op.drop_index("ix_jobs_confirmed")

    op.drop_table("jobs")
    op.drop_table("indexer_cursors")
    op.drop_table("indexed_blocks")
    with op.batch_alter_table("chain_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_chain_tx_sender_state")

    op.drop_table("chain_transactions")
    op.drop_table("blobs")
