"""Accounting warehouse: the BI schema and its cash mart (a view, read by BI tools through the
read-only role ``backbone_finance_reader``).

``bi.cash_monthly``: per billing month and currency, what was invoiced in accounting (posted
invoices less credit notes), paid so far, still open, and days sales outstanding over that month
(open ÷ invoiced × days in the month).

Revision ID: accounting_0010
"""

from alembic import op

revision = "accounting_0010"
down_revision = "accounting_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from backbone.warehouse.migrations.bi_schema import create_bi_schema, grant_bi_to_reader

    create_bi_schema()
    op.execute(
        """
        CREATE VIEW bi.cash_monthly AS
        SELECT period AS billing_month, currency,
               count(*) FILTER (WHERE kind = 'invoice') AS invoices,
               sum(CASE WHEN kind = 'credit_note' THEN -total ELSE total END) AS invoiced,
               sum(CASE WHEN kind = 'credit_note' THEN 0 ELSE coalesce(amount_paid, 0) END) AS paid,
               sum(CASE WHEN kind = 'credit_note' THEN 0 ELSE coalesce(balance, total) END) AS open_balance,
               CASE WHEN sum(CASE WHEN kind = 'credit_note' THEN -total ELSE total END) > 0
                    THEN round(sum(CASE WHEN kind = 'credit_note' THEN 0 ELSE coalesce(balance, total) END)
                               / sum(CASE WHEN kind = 'credit_note' THEN -total ELSE total END)
                               * extract(day FROM (to_date(period || '-01', 'YYYY-MM-DD') + interval '1 month' - interval '1 day')), 1)
               END AS days_sales_outstanding
        FROM acct.invoice
        WHERE posting_status IN ('posted', 'void_pending')
        GROUP BY period, currency
        """
    )
    grant_bi_to_reader()


def downgrade() -> None:
    raise NotImplementedError("warehouse migrations only move forward: a downgrade would lose data")
