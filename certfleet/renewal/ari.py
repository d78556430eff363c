"""ACME Renewal Information (RFC 9773): when the CA suggests a certificate be renewed.

The CA publishes a `renewalInfo` URL in its directory; `GET <renewalInfo>/<CertID>` answers a suggested window
(start, end), maybe an explanationURL, and a Retry-After saying when to ask again. certfleet renews at a random
time inside the window (RFC 9773 section 4.2: spread load, never before the start), keeps that time while later
answers still contain it, and names the replaced certificate's CertID in the new order's `replaces` field.
Pure functions here; the ACME connector fetches, the renew-expiring flow stores.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from cryptography import x509

# RFC 9773 section 4.3.3: values under a minute are treated as a minute, over a day as a day; without a
# Retry-After, certfleet asks again after 6 hours (what certbot's acme library does).
MIN_POLL = timedelta(minutes=1)
MAX_POLL = timedelta(days=1)
DEFAULT_POLL = timedelta(hours=6)


class AriError(ValueError):
    """The CA's renewal information could not be used (the window rule applies)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def cert_id(leaf: x509.Certificate) -> str:
    """base64url(AKI keyIdentifier) "." base64url(serial as DER INTEGER content octets), RFC 9773 section 4.1."""
    try:
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise AriError("the certificate has no Authority Key Identifier: it has no ARI CertID") from None
    if aki.key_identifier is None:
        raise AriError("the certificate's Authority Key Identifier has no keyIdentifier: it has no ARI CertID")
    serial = leaf.serial_number
    # DER INTEGER: big-endian two's complement, minimal, with room for the sign bit (a leading 0x00 when needed).
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_der)}"


@dataclass(frozen=True)
class RenewalInfo:
    start: datetime
    end: datetime
    explanation_url: str | None
    poll_after: timedelta  # Retry-After, clamped


def parse(body: Any, retry_after: str | None, now: datetime) -> RenewalInfo:
    """The renewalInfo JSON and the Retry-After header value; AriError naming what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("suggestedWindow"), dict):
        raise AriError("the renewalInfo answer has no suggestedWindow object")
    window = body["suggestedWindow"]
    try:
        start = _instant(window["start"])
        end = _instant(window["end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AriError(f"the renewalInfo suggestedWindow needs RFC 3339 start and end: {exc}") from None
    if end < start:
        raise AriError(f"the renewalInfo suggestedWindow ends ({end}) before it starts ({start})")
    explanation = body.get("explanationURL")
    if not (isinstance(explanation, str) and explanation.startswith(("https://", "http://"))):
        explanation = None  # shown as a link: only a web address, never e.g. a javascript: one
    return RenewalInfo(start, end, explanation, poll_delay(retry_after, now))


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone offset")
    return at.astimezone(UTC)


def poll_delay(retry_after: str | None, now: datetime) -> timedelta:
    """Retry-After as seconds or an HTTP date (RFC 9110), clamped to a minute .. a day; absent or unreadable: 6 h."""
    if not retry_after:
        return DEFAULT_POLL
    value = retry_after.strip()
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            delay = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return DEFAULT_POLL
    return min(max(delay, MIN_POLL), MAX_POLL)


def choose(info: RenewalInfo, previous: datetime | None, rng: random.Random | None = None) -> datetime:
    """A uniformly random time inside the window; an earlier choice that is still inside it is kept, so polling
    does not move the renewal around (nor let a fleet re-bunch)."""
    if previous is not None and info.start <= previous <= info.end:
        return previous
    span = (info.end - info.start).total_seconds()
    return info.start + timedelta(seconds=(rng or random.SystemRandom()).uniform(0, span))
