"""Transports to servers and one handler per server kind."""
