"""The base of the models that take a user's values (API bodies, forms, imports): a number is a number.

pydantic's lax mode takes JSON `true` as 1 and `false` as 0 for an int or float field: `"validity_days": true`
was stored as 1, `"ca_connector_id": true` chose connector 1, `"port": true` meant port 1. Those are refused here
naming the field. A string of digits is still taken (HTML forms send only text), as is a float with no fraction.
"""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

NOT_A_BOOLEAN = "a number is expected, not true or false"


def _kinds(annotation: Any) -> set[str]:
    """Which of "number", "bool", "list of numbers" an annotation admits (through Optional, unions, Annotated)."""
    if annotation is bool:
        return {"bool"}
    if annotation in (int, float):
        return {"number"}
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in get_args(annotation)))
    if origin in (list, tuple, set, frozenset) and any("number" in _kinds(arg) for arg in get_args(annotation)):
        return {"list of numbers"}
    return set()


@functools.cache
def _numeric(model: type[BaseModel], name: str) -> Literal["number", "list of numbers", ""]:
    field = model.model_fields.get(name)
    kinds = _kinds(field.annotation) if field is not None else set()
    if "bool" in kinds:
        return ""  # a field that takes true or false on purpose
    if "number" in kinds:
        return "number"
    return "list of numbers" if "list of numbers" in kinds else ""


def boolean_for_number(model: type[BaseModel], name: str, value: Any) -> bool:
    """True when `value` is true/false (or holds one) where the field wants a number (or numbers)."""
    if isinstance(value, bool):
        return _numeric(model, name) == "number"
    if isinstance(value, list | tuple) and any(isinstance(item, bool) for item in value):
        return _numeric(model, name) == "list of numbers"
    return False


class InputModel(BaseModel):
    """`BaseModel` that refuses true/false for a number field, and a field it does not have, naming the field (a
    misspelt `validty_days` was ignored without a word: the certificate got the default)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None and boolean_for_number(cls, info.field_name, value):
            raise PydanticCustomError("number_not_boolean", NOT_A_BOOLEAN)
        return value


class TaggedInputModel(BaseModel):
    """The same for a model chosen by a discriminator field (pydantic allows no field validator on that field):
    checked over the whole input, the message naming the field."""

    @model_validator(mode="before")
    @classmethod
    def _numbers_not_booleans(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                if isinstance(name, str) and boolean_for_number(cls, name, value):
                    raise PydanticCustomError("number_not_boolean", f"{name}: {NOT_A_BOOLEAN}")
        return data
