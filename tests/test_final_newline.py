"""A final line break is no part of a valid value: Python's "$" matches just before one, so each anchored pattern
that checks a whole value is matched with fullmatch (a batch key "rot-1\\n" was accepted and stored, and would
only fail at the end of the run, as an invalid Prefect artifact key)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from certfleet.fields import host_name_problem
from certfleet.rotation.service import RotationRequest
from certfleet.servers.service import ServerUpdate, windows_user_problem


def test_a_batch_key_with_a_final_line_break_is_refused() -> None:
    assert RotationRequest(batch_key="rot-1").batch_key == "rot-1"
    with pytest.raises(ValidationError, match="batch_key"):
        RotationRequest(batch_key="rot-1\n")


@pytest.mark.parametrize("name", ["www.example.com\n", "a\n.example.com"])
def test_a_host_name_with_a_line_break_is_refused(name: str) -> None:
    assert host_name_problem("www.example.com") is None
    assert host_name_problem(name) is not None


def test_a_service_name_or_windows_user_with_a_final_line_break_is_refused() -> None:
    assert ServerUpdate(service_name="nginx").service_name == "nginx"
    with pytest.raises(ValidationError, match="service_name"):
        ServerUpdate(service_name="nginx\n")
    assert windows_user_problem("CORP\\svc") is None
    assert windows_user_problem("svc\n") is not None  # refused by the control-character rule before the pattern
