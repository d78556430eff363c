"""Request bodies are limited before they are parsed, and uploads are read only from people allowed to upload
(issue 12, hole 3: anonymous memory and disk exhaustion)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from certfleet.dashboard.app import create_app
from certfleet.settings import get_settings
from tests.dashboard.asgi_driver import call, endless
from tests.dashboard.conftest import Accounts, auth, login

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # HTTP handling, not SQL

BOUNDARY = "certfleet-test-boundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch, accounts: Accounts) -> None:
    monkeypatch.setenv("CERTFLEET_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("CERTFLEET_MAX_UPLOAD_BYTES", str(64 * 1024))
    monkeypatch.setenv("CERTFLEET_MAX_UPLOAD_FILES", "3")
    get_settings.cache_clear()


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> bytes:
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, content in files:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def test_declared_json_body_over_the_limit_is_refused_unread(small_limits: None) -> None:
    app = create_app()
    answer = call(app, "POST", "/api/v1/bots", {"content-type": "application/json", "content-length": "5000"},
                  endless(b"x" * 1000, 5))  # fmt: skip
    assert answer.status == 413
    assert answer.pulled == 0
    assert "larger than 4 KiB (CERTFLEET_MAX_BODY_BYTES)" in answer.text()


def test_chunked_body_without_length_is_cut_off_while_it_streams(small_limits: None) -> None:
    app = create_app()
    answer = call(app, "POST", "/api/v1/bots", {"content-type": "application/json"}, endless(b" " * 1000, 10_000))
    assert answer.status == 413, answer.text()
    assert answer.pulled <= 4096 + 1000  # stopped at the chunk that passed the limit, not after 10 MB
    assert "CERTFLEET_MAX_BODY_BYTES" in answer.text()


def test_chunked_form_post_to_the_login_page_is_cut_off_too(small_limits: None) -> None:
    app = create_app()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    answer = call(app, "POST", "/login", headers, endless(b"username=" + b"a" * 991, 10_000))
    assert answer.status == 413
    assert answer.pulled <= 4096 + 1000
    assert "larger than 4 KiB" in answer.text()  # the page says it too (an error page, not JSON)
    assert "<h1>Too large</h1>" in answer.text()


def test_anonymous_upload_is_refused_before_one_byte_is_read(small_limits: None) -> None:
    app = create_app()
    body = multipart([("a.pem", b"x" * 1000)])
    api = call(app, "POST", "/api/v1/certificates/import", MULTIPART, endless(body, 1))
    assert (api.status, api.pulled) == (401, 0)
    page = call(app, "POST", "/discovery/import", MULTIPART, endless(body, 1))
    assert (page.status, page.pulled) == (303, 0)
    assert page.headers["location"].startswith("/login?next=")
    bad_token = {**MULTIPART, "authorization": "Bearer cfu_not-a-token"}
    assert call(app, "POST", "/api/v1/certificates/import", bad_token, endless(body, 1)).pulled == 0


def test_viewer_upload_is_refused_before_it_is_read(small_limits: None, accounts: Accounts) -> None:
    app = create_app()
    body = multipart([("a.pem", b"x" * 1000)])
    answer = call(app, "POST", "/api/v1/certificates/import", {**MULTIPART, **auth(accounts, "viewer")},
                  endless(body, 1))  # fmt: skip
    assert (answer.status, answer.pulled) == (403, 0)
    assert "uploading files needs the operator role; you are viewer" in answer.text()


def test_upload_over_the_upload_limit_is_413_even_for_an_operator(small_limits: None, accounts: Accounts) -> None:
    app = create_app()
    head = multipart([("big.pem", b"")])[:-len(f"--{BOUNDARY}--\r\n") - 2]  # fmt: skip
    chunks = iter([head, *endless(b"A" * 8192, 10_000)])  # a file that never ends
    answer = call(app, "POST", "/api/v1/certificates/import", {**MULTIPART, **auth(accounts, "operator")}, chunks)
    assert answer.status == 413, answer.text()
    assert answer.pulled <= 64 * 1024 + 8192
    assert "larger than 64 KiB (CERTFLEET_MAX_UPLOAD_BYTES)" in answer.text()


def test_more_files_than_the_cap_are_refused(small_limits: None, accounts: Accounts) -> None:
    app = create_app()
    headers = {**MULTIPART, **auth(accounts, "operator")}
    four = multipart([(f"c{i}.pem", b"not a certificate") for i in range(4)])
    answer = call(app, "POST", "/api/v1/certificates/import", headers, endless(four, 1))
    assert answer.status == 413
    assert "more than 3 files (CERTFLEET_MAX_UPLOAD_FILES)" in answer.text()
    three = multipart([(f"c{i}.pem", b"not a certificate") for i in range(3)], {"password": "unused-password"})
    answer = call(app, "POST", "/api/v1/certificates/import", headers, endless(three, 1))
    # fields do not count as files: the three are read, each gets its outcome (422: none could be imported)
    assert answer.status == 422, answer.text()
    assert '"failed":3' in answer.text().replace(" ", "")


def test_bodies_within_the_limits_still_work(small_limits: None, accounts: Accounts, client: TestClient) -> None:
    created = client.post("/api/v1/bots", json={"name": "dc-1", "purpose": "Provisioning"},
                          headers=auth(accounts, "operator"))  # fmt: skip
    assert created.status_code == 201, created.text
    login(client, "admin")  # a form post under the limit
    assert client.get("/bots").status_code == 200
