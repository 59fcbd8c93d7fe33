"""payments: money in every ISO 4217 minor unit, refunds, settlement bookkeeping, subscriptions

NUMERIC(12,2) cannot hold a fils (KWD, BHD, OMR have 3 decimals; CLF 4):
amounts become NUMERIC(19,4), existing values are kept exactly.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = sa.Numeric(19, 4)
OLD = sa.Numeric(12, 2)
AMOUNTS = (("courses", "price_amount", True), ("payments", "amount", False), ("subscriptions", "amount", False))


def upgrade() -> None:
    for table, column, nullable in AMOUNTS:
        op.alter_column(table, column, type_=NEW, existing_type=OLD, existing_nullable=nullable)

    op.add_column("payments", sa.Column("gateway_transaction_id", sa.String(length=255), nullable=True))
    op.add_column("payments", sa.Column("flagged_reason", sa.Text(), nullable=True))
    op.add_column("payments", sa.Column("refunded_amount", NEW, nullable=True))
    op.add_column("payments", sa.Column("refund_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("payments", sa.Column("effects_status", sa.String(length=20), nullable=True))
    op.create_check_constraint(
        "ck_payments_refund_in_range",
        "payments",
        "refunded_amount IS NULL OR (refunded_amount > 0 AND refunded_amount <= amount)",
    )
    op.create_index(
        "ix_payments_gateway_gateway_transaction_id", "payments", ["gateway", "gateway_transaction_id"], unique=False
    )
    op.create_index("ix_payments_subscription_id", "payments", ["subscription_id"], unique=False)
    op.create_index(
        "uq_payments_pending_course",
        "payments",
        ["user_id", "course_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending' AND course_id IS NOT NULL"),
    )
    op.create_index(
        "ix_payments_flagged", "payments", ["created_at"], unique=False,
        postgresql_where=sa.text("flagged_reason IS NOT NULL"),
    )  # fmt: skip

    op.add_column("subscriptions", sa.Column("gateway_checkout_id", sa.String(length=255), nullable=True))
    op.add_column(
        "subscriptions", sa.Column("plan_interval", sa.String(length=10), server_default="month", nullable=False)
    )
    op.add_column(
        "subscriptions",
        sa.Column(
            "metadata", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
    )
    op.create_check_constraint(
        "ck_subscriptions_plan_interval_valid", "subscriptions", "plan_interval IN ('day', 'week', 'month', 'year')"
    )
    op.create_index(
        "uq_subscriptions_open_user",
        "subscriptions",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'active')"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_subscriptions_open_user", table_name="subscriptions",
        postgresql_where=sa.text("status IN ('pending', 'active')"),
    )  # fmt: skip
    op.drop_constraint("ck_subscriptions_plan_interval_valid", "subscriptions", type_="check")
    op.drop_column("subscriptions", "metadata")
    op.drop_column("subscriptions", "plan_interval")
    op.drop_column("subscriptions", "gateway_checkout_id")

    op.drop_index("ix_payments_flagged", table_name="payments", postgresql_where=sa.text("flagged_reason IS NOT NULL"))
    op.drop_index(
        "uq_payments_pending_course", table_name="payments",
        postgresql_where=sa.text("status = 'pending' AND course_id IS NOT NULL"),
    )  # fmt: skip
    op.drop_index("ix_payments_subscription_id", table_name="payments")
    op.drop_index("ix_payments_gateway_gateway_transaction_id", table_name="payments")
    op.drop_constraint("ck_payments_refund_in_range", "payments", type_="check")
    op.drop_column("payments", "effects_status")
    op.drop_column("payments", "refund_started_at")
    op.drop_column("payments", "refunded_amount")
    op.drop_column("payments", "flagged_reason")
    op.drop_column("payments", "gateway_transaction_id")

    # Amounts with more than two decimals cannot go back: rounding would change money.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM payments WHERE amount <> round(amount, 2)) "
        "OR EXISTS (SELECT 1 FROM subscriptions WHERE amount <> round(amount, 2)) "
        "OR EXISTS (SELECT 1 FROM courses WHERE price_amount <> round(price_amount, 2)) "
        "THEN RAISE EXCEPTION 'amounts with more than 2 decimals exist; NUMERIC(12,2) cannot hold them'; "
        "END IF; END $$"
    )
    for table, column, nullable in AMOUNTS:
        op.alter_column(table, column, type_=OLD, existing_type=NEW, existing_nullable=nullable)
