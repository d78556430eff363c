"""Pre-release only: rewrite migration 0001 from the models (nothing has been released on it yet)."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from alembic import command

from certfleet.models.db import alembic_config

VERSIONS = Path(__file__).resolve().parents[1] / "certfleet/models/migrations/versions"


def main() -> None:
    target = VERSIONS / "0001_initial_schema.py"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command.revision(
            alembic_config(f"sqlite:///{tmp}/gen.db"),
            message="initial schema",
            autogenerate=True,
            rev_id="0001",
        )
    text = target.read_text()
    text = text.replace("certfleet.models.orm.UTCDateTime()", "sa.DateTime()")
    text = re.sub(r"certfleet\.models\.encryption\.Encrypted(Text|Bytes)\(\)", "sa.Text()", text)
    text = re.sub(r"sa\.Enum\([^)]*length=40\)", "sa.String(length=40)", text)
    text = re.sub(r"    # ### .* ###\n", "", text)
    text = re.sub(r"Create Date: .*\n", "", text)
    text = text.replace(
        '"""initial schema\n',
        '"""Initial schema: bots, servers, CA connectors, certificates, orders, deployment journal, audit.\n',
    )
    target.write_text(text)
    subprocess.run(["ruff", "check", "--fix", "--quiet", str(target)], check=False)
    subprocess.run(["ruff", "format", "--quiet", str(target)], check=False)


if __name__ == "__main__":
    main()
