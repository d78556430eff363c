"""certfleet: certificate provisioning on Prefect 3."""

__version__ = "0.1.0"
