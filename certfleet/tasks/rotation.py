"""rotate-batch's records: the plan (one rotation_items row per certificate), issuing once per batch, outcomes."""

from __future__ import annotations

import contextvars
import logging
import threading
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.orm import Session

from certfleet.connectors.base import IssueResult
from certfleet.connectors.errors import PermanentConnectorError, TransientConnectorError
from certfleet.models import repo
from certfleet.models.bootstrap import LOCAL_BOT_NAME
from certfleet.models.db import session_scope
from certfleet.models.orm import Bot, Certificate, DeploymentTarget, Order, OrderState, RotationItem, Server
from certfleet.rotation import service
from certfleet.rotation.service import (
    DEPLOYED,
    FAILED,
    ISSUED,
    NOT_STARTED,
    ROLLED_BACK,
    SKIPPED,
    WAITING,
    RotationRequest,
)
from certfleet.tasks import issuance
from certfleet.tasks.ca_slots import ca_slot, ca_slots
from certfleet.tasks.issuance import OrderPlan, create_order, poll_order, record_issued, submit_order

ACTOR = "flow:rotate-batch"
_log = logging.getLogger(__name__)


class Planned(BaseModel):
    item_id: int
    certificate_id: int
    server_id: int | None
    server_label: str
    server_type: str
    ca_connector_id: int | None
    canary: bool
    state: str
    issued_serial: str | None
    bot_id: int | None = None  # the bot that reaches the item's server, read at each run (mappings change)
    bot_name: str = ""
    local: bool = True  # the central host's own bot: deployed in the rotate-batch process


def server_limit(server_id: int) -> str:
    """Caps a batch's deployments on one server (held on the central host and on bots alike)."""
    return f"rotate-server-{server_id}"


def _label(server: Server) -> str:
    return f"{server.description} ({server.host})"


@dataclass
class ServerItems:
    """One server's items of one stage, as ids in plan order: its server tasks read them from the database a group
    at a time (`read_items`), so no per-certificate object lives for the whole batch."""

    server_id: int | None
    server_label: str
    local: bool
    item_ids: array[int] = field(default_factory=lambda: array("q"))  # 8 bytes a certificate


@dataclass
class PlanOutline:
    """What the flow keeps of the plan: the items still to do, per stage and server, and what the limits need."""

    counted: int  # items not Skipped: the failure budget's base
    connector_ids: list[int]
    server_ids: list[int]
    canaries: list[ServerItems]
    rest: list[ServerItems]


@task(cache_policy=NO_CACHE, task_run_name="plan-rotation-{batch_key}")
def plan_rotation(batch_key: str, request: RotationRequest) -> PlanOutline:
    """The batch's items: read back on a re-run (the same certificates, what was done to each), else chosen now.

    Items are ordered by server (targets on one server together), and the first `canary_per_server_type`
    certificates of each server type are the canaries.
    """
    with session_scope() as s:
        if not s.scalar(select(RotationItem.id).where(RotationItem.batch_key == batch_key).limit(1)):
            if not request.chooses:
                raise ValueError(f"batch_key: no batch {batch_key} to continue; choose certificates to start one")
            missing = service.missing_ids(s, request)
            if missing:
                raise ValueError(f"certificate_ids: no certificate {', '.join(map(str, missing))}")
            ids = service.selected_ids(s, request)
            if not ids:
                raise ValueError("no certificate matches the selection")
            _plan_in_parts(s, batch_key, request, ids)
        return _outline(s, batch_key)


PLAN_PART = 500  # certificates loaded at once while planning: memory stays flat however large the batch


def _plan_in_parts(s: Session, batch_key: str, request: RotationRequest, ids: list[int]) -> None:
    """Write the items in plan order: by the server of each certificate's first target, then id. Certificates are
    loaded (with targets, servers and bots) a part at a time and let go after each part."""
    first_server: dict[int, int] = {}
    for certificate_id, server_id in s.execute(
        select(DeploymentTarget.certificate_id, DeploymentTarget.server_id)
        .where(DeploymentTarget.certificate_id.in_(ids))
        .order_by(DeploymentTarget.id.desc())  # the lowest target id is written last: it wins
    ):
        first_server[certificate_id] = server_id
    ordered = sorted(ids, key=lambda c: (first_server.get(c, 0), c))
    canaries: dict[str, int] = {}
    first_item: RotationItem | None = None
    for start in range(0, len(ordered), PLAN_PART):
        part = ordered[start : start + PLAN_PART]
        certs = {c.id: c for c in service.load_certificates(s, part)}
        for position, certificate_id in enumerate(part, start):
            cert = certs[certificate_id]
            server = cert.targets[0].server if cert.targets else None
            reason = service.skip_reason(cert)
            server_type = server.server_type if server else ""
            canary = False
            if reason is None and canaries.get(server_type, 0) < request.canary_per_server_type:
                canaries[server_type] = canaries.get(server_type, 0) + 1
                canary = True
            item = RotationItem(
                batch_key=batch_key,
                certificate_id=cert.id,
                server_id=server.id if server else None,
                server_label=_label(server) if server else "",
                server_type=server_type,
                canary=canary,
                position=position,
                state=SKIPPED if reason else NOT_STARTED,
                reason=reason,
                deployment_ids=[],
            )
            s.add(item)
            if first_item is None:
                first_item = item
                s.flush()
                repo.audit(s, actor=ACTOR, action="plan-rotation", obj=item, detail=f"batch {batch_key}: {len(ids)}")
        s.flush()
        s.expunge_all()  # this part's certificates and items are written: let them go


def _plan_rows(batch_key: str) -> Select[*tuple[Any, ...]]:
    """The batch's items as plain rows (no ORM objects), in plan order; the columns `_planned` takes."""
    return (
        select(
            RotationItem.id,
            RotationItem.certificate_id,
            RotationItem.server_id,
            RotationItem.server_label,
            RotationItem.server_type,
            RotationItem.canary,
            RotationItem.state,
            RotationItem.issued_serial,
            Certificate.ca_connector_id,
            Bot.id,
            Bot.name,
        )
        .join(Certificate, Certificate.id == RotationItem.certificate_id)
        .outerjoin(Server, Server.id == RotationItem.server_id)
        .outerjoin(Bot, Bot.id == Server.bot_id)
        .where(RotationItem.batch_key == batch_key)
        .order_by(RotationItem.position)
    )


def _planned(row: Row[*tuple[Any, ...]]) -> Planned:
    (item_id, certificate_id, server_id, server_label, server_type, canary, state, issued_serial, ca_connector_id,
     bot_id, bot_name) = row  # fmt: skip
    return Planned(
        item_id=item_id,
        certificate_id=certificate_id,
        server_id=server_id,
        server_label=server_label,
        server_type=server_type,
        ca_connector_id=ca_connector_id,
        canary=canary,
        state=state,
        issued_serial=issued_serial,
        bot_id=bot_id,
        bot_name=bot_name or "",
        local=bot_name == LOCAL_BOT_NAME,  # no bot: rotate_by_bot reports it not started
    )


def _outline(s: Session, batch_key: str) -> PlanOutline:
    """The plan's outline, its rows streamed (a part at a time): per stage, each server's items still to do (not
    Deployed, Skipped or Waiting For Window: their runs deploy them in the window, never issued twice)."""
    counted = 0
    connector_ids: set[int] = set()
    server_ids: set[int] = set()
    stages: tuple[dict[int | None, ServerItems], dict[int | None, ServerItems]] = ({}, {})  # canaries, rest
    for row in s.execute(_plan_rows(batch_key).execution_options(yield_per=PLAN_PART)):
        item_id, _, server_id, server_label, _, canary, state, _, ca_connector_id, _, bot_name = row
        counted += state != SKIPPED
        if ca_connector_id is not None:
            connector_ids.add(ca_connector_id)
        if server_id is not None:
            server_ids.add(server_id)
        if state in (DEPLOYED, SKIPPED, WAITING):
            continue
        # By server id: two servers may share a description and host.
        stage = stages[0 if canary else 1]
        part = stage.get(server_id)
        if part is None:
            part = stage[server_id] = ServerItems(server_id, server_label, bot_name == LOCAL_BOT_NAME)
        part.item_ids.append(item_id)
    return PlanOutline(
        counted, sorted(connector_ids), sorted(server_ids), list(stages[0].values()), list(stages[1].values())
    )


def read_items(batch_key: str, item_ids: Sequence[int]) -> list[Planned]:
    """Some of the batch's items (a group of a server), read now, in plan order."""
    with session_scope() as s:
        rows = s.execute(_plan_rows(batch_key).where(RotationItem.id.in_(list(item_ids))))
        return [_planned(row) for row in rows]


def issue_once(item_id: int, ca_connector_id: int | None = None) -> str:
    """Issue the item's certificate unless this batch already did: the order is remembered on the item before the
    CA is called, and an order the CA already answered is recorded, never placed again. Calls to the CA hold a slot
    of the connector's limit `rotate-ca-<id>`. Returns the serial."""
    serial, order_id = _order_of(item_id, create_order)
    if serial is not None:
        return serial
    with session_scope() as s:
        issued = repo.get(s, Order, order_id).state is OrderState.ISSUED
    if not issued:
        # The CA's slot is held only while the CA is called: the key and CSR were made in create_order.
        with ca_slot(ca_connector_id) if ca_connector_id is not None else nullcontext():
            if not submit_order(order_id):
                poll_order(order_id)
    serial = record_issued(order_id)
    set_state(item_id, ISSUED, serial=serial)
    return serial


def note_ignoring_windows(batch_key: str, run: str) -> None:
    """The audit event of a batch that deploys now whatever the servers' maintenance windows say (also when it
    was started from the Prefect UI, which writes no audit event of its own)."""
    with session_scope() as s:
        service.audit_ignoring_windows(s, batch_key, ACTOR, run)


@dataclass
class IssuedGroup:
    """What `issue_group` settled: serials and refusals by item id; the other items go through `issue_once`."""

    serials: dict[int, str]
    failures: dict[int, str]


@task(cache_policy=NO_CACHE, task_run_name="issue-group-from-item-{first_item_id}")
def issue_group(first_item_id: int, item_ids: list[int], ca_connector_id: int) -> IssuedGroup:
    """Issue a group of items of one CA connector in one task run, a transaction per step for the whole group
    (SQLite waits for the disk at each commit): the missing orders written and remembered on their items, then
    noted Submitted (both committed before the CA is called), sent to the CA several at once (each call holding a
    slot of `rotate-ca-<id>` from the slots this process holds: `ca_slot`), the CA's answers recorded, the issued
    certificates made current. The rules are issue_once's (an answered order recorded, never placed again); an item
    whose CA call fails transiently or is left pending is not settled here: `issue_once` then retries or polls it."""
    serials, orders, failures = _orders_of_group(item_ids)
    issued = _submit_group(orders, ca_connector_id, failures)
    recorded = _record_group(issued, failures)
    # The items' own record, in one transaction: until then a re-run finds each serial on its item's order.
    set_issued(recorded)
    serials.update(recorded)
    return IssuedGroup(serials, failures)


def _orders_of_group(item_ids: list[int]) -> tuple[dict[int, str], dict[int, int], dict[int, str]]:
    """`_order_of` for a group: by item, the serial this batch issued, else its order (the missing ones placed now,
    in one transaction with the items' order ids), else why none may be placed. An item missing from all three
    is left to issue_once."""
    serials: dict[int, str] = {}
    orders: dict[int, int] = {}
    failures: dict[int, str] = {}
    wanted: dict[int, int] = {}  # item id -> the certificate it needs an order for
    with session_scope() as s:
        rows = s.execute(
            select(RotationItem, Order)
            .outerjoin(Order, Order.id == RotationItem.order_id)
            .where(RotationItem.id.in_(item_ids))
        )
        for item, order in rows:
            serial, order_id = _known_order(item, order)
            if serial is not None:
                serials[item.id] = serial
            elif order_id is not None:
                orders[item.id] = order_id
            else:
                wanted[item.id] = item.certificate_id
        plans = issuance.plan_orders(s, sorted(set(wanted.values()))) if wanted else {}
    if not wanted:
        return serials, orders, failures
    try:
        placed = _place_orders(wanted, plans)
    except Exception as exc:  # e.g. another run placed one of these orders meanwhile: each item on its own
        _log.warning("the orders of a group of %d were not written together (%s): one at a time", len(wanted), exc)
        placed = {}
        for item_id in wanted:
            try:
                placed[item_id] = _order_of(item_id, create_order.fn)[1]
            except Exception as one:
                placed[item_id] = one
    for item_id, outcome in placed.items():
        if isinstance(outcome, TransientConnectorError):
            continue  # issue_once's task tries again
        if isinstance(outcome, Exception):  # as issue_once's task would fail: recorded by the caller
            failures[item_id] = str(outcome)
        else:
            orders[item_id] = outcome
    return serials, orders, failures


def _place_orders(wanted: dict[int, int], plans: dict[int, int | OrderPlan | Exception]) -> dict[int, int | Exception]:
    """Keys and CSRs made outside any transaction, then every new order and each item's order id in one commit."""
    outcomes: dict[int, int | OrderPlan | Exception] = dict(plans)
    drafts = []
    for certificate_id, plan in plans.items():
        if isinstance(plan, OrderPlan):
            try:
                drafts.append(issuance.draft_order(plan))
            except Exception as exc:  # a CSR that cannot be built refuses its item only
                outcomes[certificate_id] = exc
    with session_scope() as s:
        outcomes.update(issuance.write_orders(s, drafts))
        placed = {item_id: outcomes[certificate_id] for item_id, certificate_id in wanted.items()}
        rows = [{"id": item_id, "order_id": o} for item_id, o in placed.items() if isinstance(o, int)]
        if rows:
            s.execute(update(RotationItem), rows)
    return {item_id: o for item_id, o in placed.items() if not isinstance(o, OrderPlan)}


def _submit_group(orders: dict[int, int], ca_connector_id: int, failures: dict[int, str]) -> dict[int, int]:
    """`submit_order`'s steps for a group (not its retries): the orders noted Submitted in one commit, sent to the
    CA several at once, the answers recorded in one commit (a refusal fails its order only). Returns the issued
    items' orders; a refused item's reason goes to `failures`; a pending or transiently failed one is left out."""
    if not orders:
        return {}
    try:
        noted = issuance.note_submitted(list(orders.values()))
    except Exception as exc:  # nothing was sent: issue_once's tasks place each of them
        _log.warning("a group of %d orders could not be noted submitted (%s)", len(orders), exc)
        return {}
    to_send = {i: n for i, o in orders.items() if isinstance(n := noted[o], issuance.Submitted)}
    answers = _ask_all(to_send, ca_connector_id)
    results = {
        to_send[i].order_id: a for i, a in answers.items() if isinstance(a, IssueResult | PermanentConnectorError)
    }
    try:
        recorded = issuance.record_results(results)
    except Exception as exc:  # the orders stay Submitted: issue_once's tasks ask the CA again, same order
        _log.warning("the CA's answers for a group of %d orders were not recorded (%s)", len(results), exc)
        recorded = {}
    issued: dict[int, int] = {}
    for item_id, order_id in orders.items():
        answer = answers.get(item_id, noted[order_id])
        if answer is True or recorded.get(order_id):
            issued[item_id] = order_id
        elif isinstance(answer, TransientConnectorError):
            continue  # issue_once's task retries it (same order, same idempotency key)
        elif isinstance(answer, PermanentConnectorError) and order_id not in recorded:
            continue  # its failure was not recorded: issue_once's task asks the CA again and records it
        elif isinstance(answer, Exception):  # as issue_once's task would fail: recorded by the caller
            failures[item_id] = str(answer)
    return issued


def _ask_ca(calls: issuance.CaCalls, submitted: issuance.Submitted, ca_connector_id: int) -> IssueResult:
    """One order sent to the CA, holding one slot of `rotate-ca-<id>`."""
    with ca_slot(ca_connector_id):
        return calls.issue(submitted)


def _ask_all(to_send: dict[int, issuance.Submitted], ca_connector_id: int) -> dict[int, IssueResult | Exception]:
    """Each order sent to the CA once, several at once: as many threads as `rotate-ca-<id>` has slots. By item:
    the CA's answer or what the call raised."""
    if not to_send:
        return {}
    calls = issuance.CaCalls()
    answers: dict[int, IssueResult | Exception] = {}
    workers = 1 if len(to_send) == 1 else min(len(to_send), ca_slots(ca_connector_id))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"issue-{ca_connector_id}") as pool:
        # Each call runs in a copy of this task's context: its Prefect run (the CA's rate limit applies in runs).
        futures = {
            i: pool.submit(contextvars.copy_context().run, _ask_ca, calls, sub, ca_connector_id)
            for i, sub in to_send.items()
        }
        for item_id, future in futures.items():
            try:
                answers[item_id] = future.result()
            except Exception as exc:
                answers[item_id] = exc
    return answers


def _record_group(issued: dict[int, int], failures: dict[int, str]) -> dict[int, str]:
    """`record_issued` for the group's issued orders in one transaction; by item, its serial (a refusal goes to
    `failures`). Should that transaction fail as a whole, each order is recorded on its own."""
    try:
        outcomes: dict[int, str | Exception] = dict(issuance.record_issued_all(list(issued.values())))
    except Exception as exc:
        _log.warning("a group of %d issued orders was not recorded together (%s): one at a time", len(issued), exc)
        outcomes = {}
        for order_id in issued.values():
            try:
                outcomes[order_id] = record_issued.fn(order_id)
            except Exception as one:
                outcomes[order_id] = one
    recorded: dict[int, str] = {}
    for item_id, order_id in issued.items():
        outcome = outcomes[order_id]
        if isinstance(outcome, Exception):
            failures[item_id] = str(outcome)
        else:
            recorded[item_id] = outcome
    return recorded


def _order_of(item_id: int, create: Callable[[int], int]) -> tuple[str | None, int]:
    """The item's serial when this batch already issued it, else its order (placed now when it has none)."""
    with session_scope() as s:
        item = repo.get(s, RotationItem, item_id)
        order = repo.get(s, Order, item.order_id) if item.order_id is not None else None
        serial, order_id = _known_order(item, order)
        if serial is not None:
            return serial, order_id or 0
        certificate_id = item.certificate_id
    if order_id is None:
        order_id = create(certificate_id)
        with session_scope() as s:
            repo.get(s, RotationItem, item_id).order_id = order_id
    return None, order_id


def _known_order(item: RotationItem, order: Order | None) -> tuple[str | None, int | None]:
    """The item's serial when this batch already issued it (noted on the item), else its order unless that one
    failed (None: a new order is placed)."""
    if item.issued_serial:
        return item.issued_serial, item.order_id
    if order is None:
        return None, None
    if order.state is OrderState.ISSUED and order.serial_number:
        item.issued_serial = order.serial_number
        return order.serial_number, order.id
    return None, None if order.state is OrderState.FAILED else order.id


_lock = threading.Lock()


def set_state(
    item_id: int,
    state: str,
    *,
    reason: str | None = None,
    serial: str | None = None,
    deployment_ids: list[int] | None = None,
) -> None:
    with _lock, session_scope() as s:
        item = repo.get(s, RotationItem, item_id)
        item.state = state
        item.reason = reason
        if serial is not None:
            item.issued_serial = serial
        if deployment_ids is not None:
            item.deployment_ids = list(deployment_ids)


def set_issued(serials: dict[int, str]) -> None:
    """Items Issued, by item id: their serials; in one transaction (a group)."""
    _set_many([{"id": i, "state": ISSUED, "reason": None, "issued_serial": sn} for i, sn in serials.items()])


def set_deployed(deployed: dict[int, tuple[str, int]]) -> None:
    """Items Deployed, by item id: (serial, deployment id); in one transaction (a group of a server)."""
    _set_many(
        [
            {"id": item_id, "state": DEPLOYED, "reason": None, "issued_serial": sn, "deployment_ids": [deployment_id]}
            for item_id, (sn, deployment_id) in deployed.items()
        ]
    )


def _set_many(rows: list[dict[str, object]]) -> None:
    if rows:
        with _lock, session_scope() as s:
            s.execute(update(RotationItem), rows)


@dataclass(frozen=True)
class Changed:
    """An item a stopped batch takes back: its deployments, and whether runs wait for a window for it."""

    item_id: int
    certificate_id: int
    deployment_ids: list[int]
    waiting: bool


def deployed_items(batch_key: str) -> list[Changed]:
    """Items this batch deployed (their deployments) or scheduled for a maintenance window, newest first: what a
    stopped batch rolls back (and cancels)."""
    with session_scope() as s:
        rows = s.execute(
            select(RotationItem.id, RotationItem.certificate_id, RotationItem.deployment_ids, RotationItem.state)
            .where(RotationItem.batch_key == batch_key, RotationItem.state.in_([DEPLOYED, WAITING]))
            .order_by(RotationItem.position.desc())
        )
        return [Changed(item_id, cert_id, list(ids or []), state == WAITING) for item_id, cert_id, ids, state in rows]


def item_state(item_id: int) -> str:
    with session_scope() as s:
        return repo.get(s, RotationItem, item_id).state


@dataclass(frozen=True)
class ServerRow:
    server: str
    done: int
    rolled_back: int
    failed: int
    issued_not_deployed: int
    waiting_for_window: int  # issued; deployment scheduled for the servers' maintenance window (not a failure)
    not_started: int
    skipped: int


def summary_rows(batch_key: str) -> list[ServerRow]:
    with session_scope() as s:
        per: dict[tuple[int | None, str], dict[str, int]] = {}  # by server: two may share description and host
        rows = s.execute(
            select(RotationItem.server_id, RotationItem.server_label, RotationItem.state, func.count())
            .where(RotationItem.batch_key == batch_key)
            .group_by(RotationItem.server_id, RotationItem.server_label, RotationItem.state)
            .order_by(func.min(RotationItem.position))
        )
        for server_id, label, state, count in rows:
            per.setdefault((server_id, label or "(no server)"), {})[state] = count
    labels = [label for _, label in per]
    return [
        ServerRow(
            server=label if labels.count(label) == 1 else f"{label} [server {server_id}]",
            done=c.get(DEPLOYED, 0),
            rolled_back=c.get(ROLLED_BACK, 0),
            failed=c.get(FAILED, 0),
            issued_not_deployed=c.get(ISSUED, 0),
            waiting_for_window=c.get(WAITING, 0),
            not_started=c.get(NOT_STARTED, 0),
            skipped=c.get(SKIPPED, 0),
        )
        for (server_id, label), c in per.items()
    ]
