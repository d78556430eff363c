"""Bots pages: Certificates → Provisioning → Bots."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from certfleet.bots import service as bots
from certfleet.dashboard.deps import DbSession, Operator, Viewer
from certfleet.dashboard.errors import InputError, flash
from certfleet.dashboard.lists import add_export_page, page_context
from certfleet.dashboard.services.bots import BOTS
from certfleet.dashboard.templating import render
from certfleet.models import repo
from certfleet.models.orm import Bot, BotPurpose

router = APIRouter()
add_export_page(router, BOTS)
PURPOSES = [p.value for p in BotPurpose]


def _values(bot: Bot | None, fields: bots.BotFields | None = None) -> dict[str, str]:
    if fields is not None:
        v = dataclasses.asdict(fields)
        v["tags"] = ", ".join(v["tags"]) if isinstance(v["tags"], list) else (v["tags"] or "")
        return {k: "" if x is None else str(x) for k, x in v.items()}
    if bot is None:
        return {"purpose": BotPurpose.PROVISIONING.value}
    return {
        "name": bot.name,
        "ip_address": bot.ip_address or "",
        "description": bot.description or "",
        "purpose": bot.purpose.value,
        "group": bot.group_name or "",
        "os": bot.os or "",
        "tags": ", ".join(bot.tags or []),
    }


class BotForm:
    """The bot form's fields, as posted."""

    def __init__(
        self,
        name: Annotated[str, Form()] = "",
        ip_address: Annotated[str, Form()] = "",
        description: Annotated[str, Form()] = "",
        purpose: Annotated[str, Form()] = BotPurpose.PROVISIONING.value,
        group: Annotated[str, Form()] = "",
        os: Annotated[str, Form()] = "",
        tags: Annotated[str, Form()] = "",
    ) -> None:
        # A form cannot send null: an empty input means "no value". Anything else is checked as typed.
        self.fields = bots.BotFields(
            name, ip_address or None, description or None, purpose, group or None, os or None, tags
        )


def _token_page(request: Request, title: str, made: bots.CreatedBot) -> HTMLResponse:
    response = render(request, "bots/token.html", {"title": title, "bot": made.bot, "token": made.token})
    response.headers["Cache-Control"] = "no-store"  # the token is shown in this answer only
    return response


@router.get("/bots", response_class=HTMLResponse)
def bots_page(request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    ctx = page_context(request, db, who, BOTS, counts=bots.counts(db))
    return render(request, "bots/list.html", ctx)


@router.get("/bots/new", response_class=HTMLResponse)
def new_bot(request: Request, who: Operator) -> HTMLResponse:
    return render(
        request, "bots/form.html", {"title": "Create Bot", "bot": None, "v": _values(None), "purposes": PURPOSES}
    )


@router.post("/bots", response_class=HTMLResponse)
def create_bot(request: Request, db: DbSession, who: Operator, form: Annotated[BotForm, Depends()]) -> Response:
    try:
        made = bots.create_bot(db, form.fields, who.username)
    except InputError as exc:
        ctx = {"title": "Create Bot", "bot": None, "v": _values(None, form.fields), "error": exc, "purposes": PURPOSES}
        return render(request, "bots/form.html", ctx, status_code=422)
    return _token_page(request, "Bot created", made)


@router.get("/bots/{bot_id}", response_class=HTMLResponse)
def bot_detail(bot_id: int, request: Request, db: DbSession, who: Viewer) -> HTMLResponse:
    bot = repo.get(db, Bot, bot_id)
    return render(
        request,
        "bots/form.html",
        {"title": f"Configure Bot {bot.name}", "bot": bot, "v": _values(bot), "purposes": PURPOSES},
    )


@router.post("/bots/{bot_id}", response_class=HTMLResponse)
def configure_bot(
    bot_id: int, request: Request, db: DbSession, who: Operator, form: Annotated[BotForm, Depends()]
) -> Response:
    try:
        bot = bots.configure_bot(db, bot_id, form.fields, who.username)
    except InputError as exc:
        bot = repo.get(db, Bot, bot_id)
        ctx = {"title": "Configure Bot", "bot": bot, "v": _values(bot, form.fields), "error": exc, "purposes": PURPOSES}
        return render(request, "bots/form.html", ctx, status_code=422)
    response = RedirectResponse("/bots", status_code=303)
    flash(response, f"bot {bot.name} saved", "success")
    return response


@router.post("/bots/{bot_id}/stop")
def stop_bot(bot_id: int, db: DbSession, who: Operator) -> Response:
    bot = bots.set_running(db, bot_id, False, who.username)
    response = RedirectResponse("/bots", status_code=303)
    flash(response, f"bot {bot.name} stopped", "success")
    return response


@router.post("/bots/{bot_id}/start")
def start_bot(bot_id: int, db: DbSession, who: Operator) -> Response:
    bot = bots.set_running(db, bot_id, True, who.username)
    response = RedirectResponse("/bots", status_code=303)
    flash(response, f"bot {bot.name} started: {bot.status.value}", "success")
    return response


@router.post("/bots/{bot_id}/token", response_class=HTMLResponse)
def regenerate_token(bot_id: int, request: Request, db: DbSession, who: Operator) -> HTMLResponse:
    made = bots.new_token(db, bot_id, who.username)
    return _token_page(request, "New bot token", made)


@router.post("/bots/{bot_id}/revoke-token")
def revoke_token(bot_id: int, db: DbSession, who: Operator) -> Response:
    bot = bots.revoke_token(db, bot_id, who.username)
    response = RedirectResponse("/bots", status_code=303)
    flash(response, f"the token of {bot.name} is revoked: the bot can no longer check in", "success")
    return response


@router.post("/bots/{bot_id}/delete")
def delete_bot(bot_id: int, db: DbSession, who: Operator) -> Response:
    detail = bots.delete_bot(db, bot_id, who.username)
    response = RedirectResponse("/bots", status_code=303)
    flash(response, f"deleted bot {detail}", "success")
    return response
