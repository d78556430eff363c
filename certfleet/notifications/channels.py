"""The channels: SMTP e-mail (STARTTLS or implicit TLS, auth, text + HTML), Slack and Microsoft Teams incoming
webhooks, and a generic JSON webhook signed with HMAC-SHA256. No database here: a channel is its kind, its
shown settings and its secret; `send` returns the server's answer or raises `DeliveryError` carrying it."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx

KINDS = ("email", "slack", "teams", "webhook")
KIND_LABELS = {"email": "E-mail (SMTP)", "slack": "Slack", "teams": "Microsoft Teams", "webhook": "JSON webhook"}
SMTP_SECURITY = ("starttls", "tls", "none")
SIGNATURE_HEADER = "X-Certfleet-Signature"
TIMESTAMP_HEADER = "X-Certfleet-Timestamp"
TIMEOUT_S = 15.0
ANSWER_MAX = 500


class DeliveryError(Exception):
    """The message did not go out; the text is what the server (or the network) said, `code` the SMTP reply
    code when the server refused (5xx: permanent, 4xx: try later), None for a network failure."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Message:
    kind: str  # event kind
    key: str  # event key (idempotency)
    subject: str
    text: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelConfig:
    kind: str
    settings: dict[str, Any]
    secret: str | None


def html_part(msg: Message) -> str:
    rows = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in msg.facts)
    return (
        f"<html><body><h3>{html.escape(msg.subject)}</h3><p>{html.escape(msg.text)}</p>"
        f"<table>{rows}</table></body></html>"
    )


def text_part(msg: Message) -> str:
    lines = [msg.text, ""] + [f"{k}: {v}" for k, v in msg.facts]
    return "\n".join(lines) + "\n"


def email_message(settings: dict[str, Any], msg: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = msg.subject
    mail["From"] = settings["sender"]
    mail["To"] = ", ".join(settings["recipients"])
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(domain="certfleet")
    mail["X-Certfleet-Event"] = msg.key
    mail.set_content(text_part(msg))
    mail.add_alternative(html_part(msg), subtype="html")
    return mail


def _tls_context(settings: dict[str, Any]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.get("ca_file") or None)


def send_email(config: ChannelConfig, msg: Message) -> str:
    return smtp_send(config.settings, config.secret, email_message(config.settings, msg), config.settings["recipients"])


def smtp_send(settings: dict[str, Any], password: str | None, mail: EmailMessage, recipients: list[str]) -> str:
    """Send one message over SMTP (`security`: starttls, tls or none; login when `username` is set) to
    `recipients`, from `settings["sender"]`. Shared by the e-mail channel and S/MIME delivery. The server's
    answer, or `DeliveryError` with what the server (or the network) said."""
    s = settings
    host, port, security = s["host"], int(s["port"]), s.get("security", "starttls")
    try:
        smtp: smtplib.SMTP
        if security == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT_S, context=_tls_context(s))
        else:
            smtp = smtplib.SMTP(host, port, timeout=TIMEOUT_S)
        with smtp:
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=_tls_context(s))
                smtp.ehlo()
            if s.get("username"):
                smtp.login(s["username"], password or "")
            code, answer = smtp.mail(s["sender"])
            if code != 250:
                raise DeliveryError(f"MAIL FROM refused: {code} {answer.decode(errors='replace')}", code)
            for rcpt in recipients:
                code, answer = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    raise DeliveryError(f"RCPT TO {rcpt} refused: {code} {answer.decode(errors='replace')}", code)
            # SMTP lines end in CRLF; smtplib sends bytes as they are.
            code, answer = smtp.data(mail.as_bytes(policy=mail.policy.clone(linesep="\r\n")))
            said = f"{code} {answer.decode(errors='replace')}"[:ANSWER_MAX]
            if code != 250:
                raise DeliveryError(f"SMTP {said}", code)
            return said
    except DeliveryError:
        raise
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP {exc.smtp_code} {_decode(exc.smtp_error)}"[:ANSWER_MAX], exc.smtp_code) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {host}:{port}: {type(exc).__name__}: {exc}"[:ANSWER_MAX]) from None


def _decode(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def slack_body(msg: Message) -> dict[str, Any]:
    """Slack incoming webhook: `text` is required (notifications, fallback); blocks carry the layout."""
    facts = "\n".join(f"*{k}:* {v}" for k, v in msg.facts)
    return {
        "text": msg.subject,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": msg.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": msg.text}},
            *([{"type": "section", "text": {"type": "mrkdwn", "text": facts}}] if facts else []),
        ],
    }


def teams_body(msg: Message) -> dict[str, Any]:
    """Microsoft Teams incoming webhook (Workflows): a message with one Adaptive Card attachment."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": msg.subject, "weight": "Bolder", "size": "Medium", "wrap": True},
                        {"type": "TextBlock", "text": msg.text, "wrap": True},
                        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in msg.facts]},
                    ],
                },
            }
        ],
    }


def webhook_body(msg: Message) -> dict[str, Any]:
    return {
        "event": msg.kind,
        "key": msg.key,
        "subject": msg.subject,
        "text": msg.text,
        "facts": dict(msg.facts),
        "data": msg.data,
    }


def signature(key: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(key, timestamp + "." + body): the receiver recomputes it and compares."""
    mac = hmac.new(key.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _post(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None, *, signing_key: str | None = None
) -> str:
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    sent = {"Content-Type": "application/json", "User-Agent": "certfleet", **(headers or {})}
    if signing_key is not None:
        ts = str(int(time.time()))
        sent[TIMESTAMP_HEADER] = ts
        sent[SIGNATURE_HEADER] = signature(signing_key, ts, raw)
    try:
        response = httpx.post(url, content=raw, headers=sent, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        # A Slack or Teams webhook URL is a secret: never let it into the stored error.
        said = f"{type(exc).__name__}: {exc}".replace(url, "<webhook URL>")
        raise DeliveryError(said[:ANSWER_MAX]) from None
    answer = f"HTTP {response.status_code} {response.text}"[:ANSWER_MAX]
    if not response.is_success:
        raise DeliveryError(answer)
    return answer


def send(config: ChannelConfig, msg: Message) -> str:
    """Send one message; the server's answer, or `DeliveryError`."""
    if config.kind == "email":
        return send_email(config, msg)
    if config.kind == "slack":
        return _post(config.secret or "", slack_body(msg))
    if config.kind == "teams":
        return _post(config.secret or "", teams_body(msg))
    if config.kind == "webhook":
        return _post(config.settings["url"], webhook_body(msg), signing_key=config.secret or "")
    raise DeliveryError(f"unknown channel kind {config.kind!r}")
