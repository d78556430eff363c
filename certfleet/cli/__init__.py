"""The `certfleet` command."""
