"""Serving flows, the embedded Prefect server and bootstrap of work pools."""
