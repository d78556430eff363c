"""InputModel: JSON true/false is refused for a number field (pydantic's lax mode took true as 1), naming the
field; numbers, digit strings and real booleans pass as before."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import Field, ValidationError

from certfleet.input_model import InputModel, TaggedInputModel


class Body(InputModel):
    count: int = 0
    share: float | None = None
    port: Annotated[int, Field(ge=1)] | None = None
    ids: list[int] | None = None
    flag: bool = False
    either: int | bool | None = None  # takes true on purpose: left alone
    name: str = ""


@pytest.mark.parametrize(
    ("field", "value"),
    [("count", True), ("share", False), ("port", True), ("ids", [1, True]), ("ids", (False,))],
)
def test_true_or_false_for_a_number_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        Body.model_validate({field: value})
    error = refused.value.errors()[0]
    assert error["loc"] == (field,)
    assert error["msg"] == "a number is expected, not true or false"


def test_numbers_digit_strings_and_real_booleans_pass() -> None:
    body = Body.model_validate({"count": "7", "share": 0.5, "port": 443, "ids": [1, 2], "flag": True, "either": True})
    assert (body.count, body.share, body.port, body.ids, body.flag, body.either) == (7, 0.5, 443, [1, 2], True, True)
    assert Body.model_validate({"name": True} | {"name": "x"}).name == "x"


class Tagged(TaggedInputModel):
    kind: Literal["a"] = "a"
    organization_id: int = 0


def test_a_model_chosen_by_a_discriminator_names_the_field_in_the_message() -> None:
    with pytest.raises(ValidationError, match="organization_id: a number is expected, not true or false"):
        Tagged.model_validate({"kind": "a", "organization_id": True})
    assert Tagged.model_validate({"kind": "a", "organization_id": 5}).organization_id == 5
