"""Persistence and data contracts: tables, the one place sessions are made, queries."""
