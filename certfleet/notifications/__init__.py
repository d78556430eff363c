"""Notifications: events (renewal failed, deployment failed or rolled back, expiry thresholds, bot inactive,
renewal schedule did not run), rules that route them, channels that carry them, and the outbox that sends
each (event, channel) once, retrying with backoff."""
