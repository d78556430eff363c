"""The field rules themselves (certfleet/fields.py): what each type keeps exactly and what it refuses, and why."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from certfleet import fields
from certfleet.fields import Description, Email, Host, InputError, Name, Secret, TagList


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x" * 10_000, "name: 10000 characters, at most 120"),
        ("abc\ud800def", "name: invalid Unicode: lone surrogate U+D800 at position 3"),
        ("abc\x00def", "name: control character U+0000 at position 3"),
        ("\tedge", "name: control character U+0009 at position 0"),
        ("\redge", "name: control character U+000D at position 0"),
        ("   ", "name: only whitespace"),
        (" edge", "name: starts with whitespace (U+0020)"),
        ("edge\u3000", "name: ends with whitespace (U+3000)"),
        ("", "name: empty"),
        ("a\ufffeb", "name: noncharacter U+FFFE at position 1"),
    ],
)
def test_a_name_is_refused_with_the_field_and_the_rule(value: str, message: str) -> None:
    with pytest.raises(InputError) as refused:
        Name(120).check(value, "name")
    assert refused.value.message == message
    assert refused.value.field == "name"


@pytest.mark.parametrize("value", ["edge-01", "Ünïcødé Café 北京 ☕", 'R&D <team> "prod"', "e\u0301", "x" * 120, "a b"])
def test_a_name_is_kept_exactly(value: str) -> None:
    assert Name(120).check(value, "name") == value


def test_a_description_may_be_empty_or_multi_line_but_not_only_whitespace() -> None:
    rule = Description(2000)
    for kept in ("", "line 1\r\nline 2\tend", "  indented", "x" * 2000):
        assert rule.check(kept, "description") == kept
    for value, message in (
        (" \t\n", "description: only whitespace; send an empty value for none"),
        ("abc\x00", "description: control character U+0000 at position 3"),
        ("bell\x07", "description: control character U+0007 at position 4"),
        ("x" * 2001, "description: 2001 characters, at most 2000"),
    ):
        with pytest.raises(InputError) as refused:
            rule.check(value, "description")
        assert refused.value.message == message


def test_optional_none_stays_none_and_an_empty_name_is_still_refused() -> None:
    assert Name(120).check_optional(None, "group") is None
    with pytest.raises(InputError, match=r"^group: empty$"):
        Name(120).check_optional("", "group")


@pytest.mark.parametrize(
    "value", ["127.0.0.1", "192.0.2.10", "::1", "2001:DB8::1", "www.example.com", "www.example.com.", "x_y.test"]
)
def test_a_host_is_kept_as_written(value: str) -> None:
    assert Host().check(value, "ip_address") == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0x7f.1", "looks like an IPv4 address"),
        ("127.1", "looks like an IPv4 address"),
        ("0177.0.0.1", "looks like an IPv4 address"),
        ("192.0.2.010", "looks like an IPv4 address"),
        ("bücher.example", "write it as xn--bcher-kva.example"),
        ("fe80::1%<script>", "an IPv6 zone"),
        ("2001:db8::g", "not a valid IPv6 address"),
        ("a..b", "label ''"),
        ("-lead.test", "label '-lead'"),
        ("host name", "label 'host name'"),
    ],
)
def test_a_host_that_is_no_address_and_no_dns_name_is_refused(value: str, why: str) -> None:
    with pytest.raises(InputError) as refused:
        Host().check(value, "ip_address")
    assert refused.value.message.startswith("ip_address: ")
    assert why in refused.value.message


def test_the_host_length_is_the_column_size() -> None:
    name = ".".join(["a" * 20] * 4)  # 83 characters: a fine DNS name, longer than Bot.ip_address's 64
    assert Host().check(name, "ip_address") == name
    with pytest.raises(InputError, match=r"^ip_address: 83 characters, at most 64$"):
        Host(64).check(name, "ip_address")


@pytest.mark.parametrize("value", ["alice@x.test", "Alice.Smith+tag@Example.COM", "o'brien@mail.example.org"])
def test_an_email_address_is_kept_exactly(value: str) -> None:
    assert Email().check(value, "email") == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("alice@x.test<script>", "the domain after '@'"),
        ("a" * 10_000 + "@x.test", "10007 characters, at most 254"),
        ("a" * 65 + "@x.test", "65 characters, at most 64"),
        ("alice", "not an e-mail address"),
        ("@x.test", "not an e-mail address"),
        (".alice@x.test", "the part before '@'"),
        ("al..ice@x.test", "the part before '@'"),
        ("alice@0x7f.1", "looks like an IPv4 address"),
        (" alice@x.test", "starts with whitespace"),
        ("alice@x.test\x00", "control character U+0000 at position 12"),
    ],
)
def test_a_bad_email_address_is_refused(value: str, why: str) -> None:
    with pytest.raises(InputError) as refused:
        Email().check(value, "email")
    assert refused.value.message.startswith("email: ")
    assert why in refused.value.message


def test_tags_are_refused_not_merged_or_trimmed() -> None:
    rule = TagList()
    assert rule.check_tags(["env=prod", 'R&D <team> "prod"', "北京 ☕"]) == ["env=prod", 'R&D <team> "prod"', "北京 ☕"]
    for tags, message in (
        (["a", "a"], "tags.1: the same tag as an earlier one (tag 0)"),
        (["ok", "x" * 10_000], "tags.1: 10000 characters, at most 100"),
        (["a,b"], "tags.0: a comma at position 1; commas separate tags"),
        ([" lead"], "tags.0: starts with whitespace (U+0020)"),
        ([f"t{i}" for i in range(51)], "tags: 51 tags, at most 50"),
    ):
        with pytest.raises(InputError) as refused:
            rule.check_tags(tags)
        assert refused.value.message == message


def test_form_tags_split_on_commas_and_check_the_rest() -> None:
    assert fields.form_tags("env=prod, team=web,") == ["env=prod", "team=web"]
    with pytest.raises(InputError, match="control character U\\+0009"):
        fields.form_tags("\tenv=prod")


def test_a_secret_is_kept_with_its_spaces_and_never_quoted() -> None:
    assert Secret().check(" pass phrase ", "password") == " pass phrase "
    with pytest.raises(InputError) as refused:
        Secret().check("hunter2\x00x", "password")
    assert refused.value.message == "password: control character U+0000 at position 7"
    assert "hunter2" not in refused.value.message


def test_the_rules_work_in_pydantic_models_with_the_same_messages() -> None:
    class Body(BaseModel):
        name: Annotated[str, Name(120)]
        description: Annotated[str, Description(2000)] | None = None
        tags: Annotated[list[str], TagList()] = []

    assert Body(name="n", description="", tags=["a"]).description == ""
    with pytest.raises(ValidationError) as refused:
        Body(name="x" * 10_000, description="abc\x00", tags=["a", "a"])
    messages = {str(e["loc"][0]): e["msg"] for e in refused.value.errors()}
    assert messages == {
        "name": "10000 characters, at most 120",
        "description": "control character U+0000 at position 3",
        "tags": "tag 1: the same tag as an earlier one (tag 0)",
    }


def test_safe_text_makes_a_message_encodable() -> None:
    assert fields.safe_text("abc\ud800def") == "abc\ufffddef"
    assert fields.safe_text("abc\ud800def").encode("utf-8")


def test_unicode_problem_fast_path_refuses_exactly_what_the_rule_names() -> None:
    """The one-regex clearance agrees with the per-character rule for every code point of the BMP and the last
    two code points of every plane (noncharacters), with and without line breaks allowed."""
    import unicodedata

    from certfleet.fields import unicode_problem

    def refused(char: str, allow_line_breaks: bool) -> bool:
        code = ord(char)
        control = unicodedata.category(char) == "Cc" and not (allow_line_breaks and char in "\t\r\n")
        nonchar = 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE
        return 0xD800 <= code <= 0xDFFF or control or nonchar

    planes = [p << 16 | low for p in range(1, 17) for low in (0xFFFD, 0xFFFE, 0xFFFF)]
    for code in [*range(0x10000), *planes]:
        for allow in (False, True):
            got = unicode_problem(f"ok{chr(code)}ok", allow_line_breaks=allow) is not None
            assert got == refused(chr(code), allow), (hex(code), allow)
