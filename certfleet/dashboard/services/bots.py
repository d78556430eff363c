"""The Provisioning Bots list (columns, filters, export). What bots are and do lives in `certfleet.bots`."""

from __future__ import annotations

from sqlalchemy import select

from certfleet.dashboard import listing
from certfleet.dashboard.listing import ColType, Column, ListSpec
from certfleet.models.orm import Bot, BotPurpose, BotStatus

BOTS = ListSpec(
    name="bots",
    title="Provisioning Bots",
    base=lambda: select(Bot.id),
    pk=Bot.id,
    default_sort="name",
    columns=(
        Column("name", "Bot Name", Bot.name, default=True, width=22),
        Column("ip_address", "IP Address", Bot.ip_address, default=True, width=16),
        Column("description", "Description", Bot.description, default=True, width=30),
        Column("status", "Status", Bot.status, ColType.ENUM, default=True, choices=tuple(BotStatus), width=16),
        Column("last_update", "Last Bot Update", Bot.last_update, ColType.DATE, default=True),
        Column("version", "Bot Version", Bot.version, default=True, width=12),
        Column("purpose", "Purpose", Bot.purpose, ColType.ENUM, choices=tuple(BotPurpose), width=24),
        Column("group", "Group", Bot.group_name),
        Column("token", "Bot Token", Bot.token_prefix, render=lambda v: f"{v}…" if v else "none", width=14),
        Column("os", "OS", Bot.os, width=16),
        Column("created_at", "Created Date", Bot.created_at, ColType.DATE),
        Column("created_by", "Created By", Bot.created_by),
        Column("tags", "Tags", Bot.tags, ColType.TAGS, width=24),
    ),
)


__all__ = ["BOTS", "listing"]
