"""runbook runs, steps, decisions and slots: the runbooks feature's tables

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:26:26.824921
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('runbook_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('runbook_id', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('started_by', sa.String(length=200), nullable=False),
    sa.Column('trigger', sa.String(length=40), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('cancelled_by', sa.String(length=200), nullable=False),
    sa.Column('audit_incident_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('runbook_runs', schema=None) as batch_op:
        batch_op.create_index('ix_runbook_runs_rb_status', ['runbook_id', 'status'], unique=False)

    op.create_table('runbook_slots',
    sa.Column('runbook_id', sa.String(length=80), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('runbook_id')
    )
    op.create_table('runbook_decisions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=80), nullable=False),
    sa.Column('approved', sa.Boolean(), nullable=False),
    sa.Column('by', sa.String(length=200), nullable=False),
    sa.Column('via', sa.String(length=20), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runbook_runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('runbook_steps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=80), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('rollback_of', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('idempotent', sa.Boolean(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('progress', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runbook_runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('runbook_steps', schema=None) as batch_op:
        batch_op.create_index('ix_runbook_steps_run', ['run_id', 'seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runbook_steps', schema=None) as batch_op:
        batch_op.drop_index('ix_runbook_steps_run')

    op.drop_table('runbook_steps')
    op.drop_table('runbook_decisions')
    op.drop_table('runbook_slots')
    with op.batch_alter_table('runbook_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runbook_runs_rb_status')

    op.drop_table('runbook_runs')
