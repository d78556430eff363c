"""Stand-in services (a TLS listener) that let demos and integration tests deploy to a real server."""
