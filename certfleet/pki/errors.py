"""The single error type of the certificate toolkit, so callers can show its message to the user as is."""


class CertificateFormatError(ValueError):
    """Input that cannot be used as certificate material; the message says what is wrong and how to fix it."""
