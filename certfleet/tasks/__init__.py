"""Prefect tasks: thin adapters that load config, build a connector, do one side effect and record it."""
