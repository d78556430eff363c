"""How a bot trusts certfleet's API (--ca-bundle): a usable file, or a refusal naming the file."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from certfleet.jobs.store import api_trust
from tests.integration.pki_kit import ca_root_pem


def test_the_given_ca_file_is_what_the_agent_trusts(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca_root_pem())
    context = api_trust(str(bundle))
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1  # only that CA, not the system's


def test_without_a_file_the_system_trust_store_is_used() -> None:
    assert api_trust(None).verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_a_missing_or_unreadable_file_is_refused_naming_it(tmp_path: Path, content: bytes | None) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^cannot use the CA bundle {bundle} \(.+\): give a PEM file"):
        api_trust(str(bundle))
