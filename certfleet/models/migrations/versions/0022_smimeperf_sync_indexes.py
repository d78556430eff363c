"""S/MIME sync lookups by index: a profile's users by directory key, and any user by lower(email).

Each page of a directory sync looks up its users by (profile_id, directory_key) and by lower(email); without
these indexes both lookups scanned the whole table once per page (quadratic in the number of users).

Revision ID: 0022_smimeperf_sync_indexes
Revises: 0021_smimeca_delivery_targets
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_smimeperf_sync_indexes"
down_revision: str | None = "0021_smimeca_delivery_targets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_smime_users_profile_key", "smime_users", ["profile_id", "directory_key"])
    op.create_index("ix_smime_users_email_lower", "smime_users", [sa.text("lower(email)")])


def downgrade() -> None:
    op.drop_index("ix_smime_users_email_lower", table_name="smime_users")
    op.drop_index("ix_smime_users_profile_key", table_name="smime_users")
