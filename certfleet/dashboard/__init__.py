"""The web dashboard (HTML pages for people) and the JSON API under /api/v1 (for scripts and bots)."""
