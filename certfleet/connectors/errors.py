"""The two kinds of connector failure: worth retrying, or not (fail, roll back, tell the user why)."""


class ConnectorError(Exception):
    """Root of every error a CA or server connector raises. The message is meant for the user."""


class TransientConnectorError(ConnectorError):
    """Timeouts, resets, 429 and 5xx: the same call may succeed later."""


class PermanentConnectorError(ConnectorError):
    """Bad credentials, a denied request, a broken configuration: retrying will not help."""


class OrderStillPending(TransientConnectorError):
    """The CA accepted the order but has not issued yet; poll again later."""


class AlreadyRevoked(PermanentConnectorError):
    """The CA says the certificate is revoked already: a retried revoke is done, not failed."""
