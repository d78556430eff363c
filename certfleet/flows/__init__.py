"""Prefect flows: one module per business process."""
