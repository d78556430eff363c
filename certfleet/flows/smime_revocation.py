"""revoke-smime-user: a leaver's (or any S/MIME user's) certificates revoked at the connector that issued them."""

from __future__ import annotations

from prefect import flow

from certfleet.revocation import parse_reason
from certfleet.tasks.smime_revocation import record_user_revoked, revoke_order, serials_to_revoke


@flow(name="revoke-smime-user", flow_run_name="revoke-smime-user-{user_id}")
def revoke_smime_user(user_id: int, reason: str = "unspecified", serial_number: str | None = None) -> list[str]:
    """`reason`: an RFC 5280 reason name (cessationOfOperation for a leaver, keyCompromise, ...). Every certificate
    of the user that is still valid is revoked, or only `serial_number`; the user becomes Revoked with reason and
    time once their newest certificate is. Returns the serials revoked. Re-running is safe."""
    parse_reason(reason)  # a bad name fails the run before any CA is called
    revoked = [revoke_order(order_id, connector_id, serial, reason)
               for order_id, connector_id, serial in serials_to_revoke(user_id, serial_number)]  # fmt: skip
    record_user_revoked(user_id, reason)
    return revoked
