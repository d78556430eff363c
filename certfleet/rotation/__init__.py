"""Batch rotation: which certificates a `rotate-batch` run takes, and what it did to each (rotation_items)."""
