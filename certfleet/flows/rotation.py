"""rotate-batch: re-key, re-issue and deploy a batch of certificates, canaries first, within a failure budget.

The batch is planned once into `rotation_items` (keyed by `batch_key`), so a re-run with the same key continues
where a stopped batch ended and never issues a certificate twice. Work is grouped per server: one task per server
takes its certificates a group at a time (one connection per server), several servers at once; servers with fewer
certificates than a group are packed a few to a task, their certificates issued and deployed together (still one
config test and one reload per server). Each call to the CA holds a slot of the connector's Prefect global
concurrency limit `rotate-ca-<id>`. Each stage (the canaries, then the rest) holds a slot of `rotate-server-<id>`
of every server its certificates are deployed to from this process, taken in one call to Prefect when the stage
starts (all or none: two batches never wait for each other in a circle) and given back when it ends, so a second
batch on one of those servers waits until the stage is over (certfleet.tasks.server_slots); on a bot, each
certificate holds its servers' slots. The first `canary_per_server_type` certificates of each server type go
first and must all be deployed before the others start. When a canary fails, or more than `failure_budget` of the
batch fails, nothing new starts and what the batch deployed is rolled back from the journal (the steps of
`rollback-deployment`). A table artifact says, per server, what was done.

Servers of the central host's own bot are deployed to in this flow's process. The certificates of a server mapped to
another bot are issued here, a few at a time, and deployed by that bot: a `rotate-on-bot` run on its queue
(certfleet.flows.rotation_bot), whose deployments this run then reads back from the database. A bot that is not
Active (or silent), or that does not take its run within `bot_start_timeout` seconds, leaves its certificates not
started with the reason; they count against the failure budget. A stopped batch rolls back on each bot the same way.

Maintenance windows (certfleet.rotation.windows): an issued certificate's targets on servers outside their window
are not deployed by the batch but get the Scheduled deploy-certificate run of a single deploy; the item is Waiting
For Window (not a failure; a re-run leaves it alone) and a stopped batch cancels those runs.
"""

from __future__ import annotations

import contextvars
import math
import threading
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.transactions import get_transaction

from certfleet.flows.rotation_bot import deploy_everywhere
from certfleet.models.orm import DeploymentStatus
from certfleet.rotation import by_bot as bots
from certfleet.rotation import windows
from certfleet.rotation.service import (
    DEPLOYED,
    FAILED,
    ROLLED_BACK,
    WAITING,
    RotationRequest,
)
from certfleet.tasks.build import release_connections
from certfleet.tasks.ca_slots import ca_limit, release_ca_slots
from certfleet.tasks.deploy_group import GROUP, GroupOutcome, deploy_group, deploy_groups
from certfleet.tasks.gc_freeze import earlier_objects_frozen
from certfleet.tasks.restore_group import roll_back_deployments
from certfleet.tasks.rotation import (
    Planned,
    PlanOutline,
    ServerItems,
    deployed_items,
    issue_group,
    issue_once,
    item_state,
    note_ignoring_windows,
    plan_rotation,
    read_items,
    server_limit,
    set_deployed,
    set_state,
    summary_rows,
)
from certfleet.tasks.server_slots import StageSlots, local_servers

PARALLEL_SERVERS = 8
LIMIT_CALLS = 8  # calls to Prefect at once while the batch's limits are created or updated
LIMITS_PAGE = 200  # Prefect's default page size (PREFECT_API_DEFAULT_LIMIT)


class RotationStopped(RuntimeError):
    """A canary failed or the failure budget was spent: the batch stopped and rolled back what it deployed."""


@dataclass
class _Batch:
    """What the server tasks of one run share: failures so far and whether to start anything more."""

    allowed_failures: int
    ignore_windows: bool = False  # deploy now also to servers outside their maintenance window (or none has one)
    failures: list[str] = field(default_factory=list)
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    go_variables: set[str] = field(default_factory=set)  # of the bot runs under way: deleted when the batch stops
    slots: StageSlots = field(default_factory=lambda: StageSlots(()))  # the running stage's server slots

    def failed(self, note: str, *, stop_at_once: bool) -> None:
        with self.lock:
            self.failures.append(note)
            if stop_at_once or len(self.failures) > self.allowed_failures:
                self.stopped = True
                live, self.go_variables = self.go_variables, set()
            else:
                live = set()
        for name in live:  # the bots start nothing more
            bots.stop_wanting(name)

    def open_go(self) -> str | None:
        """A new go variable for a bot run, or None when the batch has stopped meanwhile."""
        with self.lock:
            if self.stopped:
                return None
            name = bots.want()
            self.go_variables.add(name)
            return name

    def close_go(self, name: str) -> None:
        with self.lock:
            self.go_variables.discard(name)
        bots.stop_wanting(name)


_batches: dict[str, _Batch] = {}


def _threads(workers: int) -> TaskRunner[PrefectFuture[Any]]:
    return cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=workers))


def _run_name() -> str:
    params = flow_run.parameters
    if params.get("batch_key"):
        return f"rotate-batch-{params['batch_key']}"
    if params.get("batch_name"):
        return f"rotate-batch-{params['batch_name']}"
    ids = params.get("certificate_ids") or []
    return "rotate-batch-" + ("-".join(str(i) for i in ids[:5]) if ids else "filter")


def _ensure_limits(plan: PlanOutline, ca_concurrency: int, server_concurrency: int) -> None:
    """The batch's global concurrency limits created or updated: a missing one would not hold anything back
    (the CA slots' `concurrency(strict=True)` and `StageSlots` refuse it instead). Prefect's limits are read in
    pages first, so those already right cost nothing (a renewal run finds its servers' limits from the last one);
    the rest are written several at once: 50 servers one after another took 1-2 s on a busy Prefect server."""
    from prefect.client.orchestration import get_client

    limits = {ca_limit(c): ca_concurrency for c in plan.connector_ids}
    local = [i for part in plan.canaries + plan.rest if part.local for i in part.item_ids]
    for server_id in set(plan.server_ids) | local_servers(local):
        limits[server_limit(server_id)] = server_concurrency
    with get_client(sync_client=True) as client:
        existing = _limits_of(client, set(limits))
        todo = {name: slots for name, slots in limits.items() if existing.get(name) != slots}
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=LIMIT_CALLS) as pool:
            # Each call in a copy of this context: the run's Prefect settings (API URL).
            calls = [
                pool.submit(contextvars.copy_context().run, _write_limit, client, name, slots, name in existing)
                for name, slots in sorted(todo.items())
            ]
            for call in calls:
                call.result()


def _limits_of(client: SyncPrefectClient, names: set[str]) -> dict[str, int]:
    """The slots of those of `names` that Prefect has: every limit read, LIMITS_PAGE at a time."""
    found: dict[str, int] = {}
    offset = 0
    while True:
        page = client.read_global_concurrency_limits(limit=LIMITS_PAGE, offset=offset)
        found.update({limit.name: limit.limit for limit in page if limit.name in names})
        if len(page) < LIMITS_PAGE:  # the last page (or a server that pages smaller: the rest is upserted)
            return found
        offset += len(page)


def _write_limit(client: SyncPrefectClient, name: str, slots: int, exists: bool) -> None:
    """One call for a limit that was missing (two if another run created it meanwhile), as upsert does else."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    if not exists:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            return
        except ObjectAlreadyExists:
            pass
    client.upsert_global_concurrency_limit_by_name(name, slots)


def _issue(item: Planned, batch: _Batch) -> str | None:
    """The item's certificate issued (once per batch); None when the CA refused or failed (recorded)."""
    try:
        if item.ca_connector_id is None:  # planned as Skipped; here only if the connector was removed since
            raise ValueError("no CA connector")
        return issue_once(item.item_id, item.ca_connector_id)
    except Exception as exc:  # the CA refused or failed: nothing was deployed
        set_state(item.item_id, FAILED, reason=f"issue failed: {exc}")
        batch.failed(f"certificate {item.certificate_id}: issue failed: {exc}", stop_at_once=item.canary)
        return None


def _wait_for_window(item: Planned, chosen: windows.Split, deployment_ids: list[int] | None = None) -> None:
    """The item's remaining targets wait for their windows in Scheduled runs: the item waits, not a failure."""
    reason = windows.schedule(item.certificate_id, chosen)
    set_state(item.item_id, WAITING, reason=reason, deployment_ids=deployment_ids)


def _issue_all(items: list[Planned], batch: _Batch) -> list[tuple[Planned, str]]:
    """The items issued (once per batch), a group per CA connector in one task run; what the group could not settle
    (a transient CA failure, an order left pending) goes through `issue_once`'s retrying tasks. Failures are
    recorded. Returns the issued items with their serials, in order."""
    serials: dict[int, str] = {}
    refused: set[int] = set()
    by_ca: dict[int, list[Planned]] = {}
    for item in items:
        if item.ca_connector_id is not None:
            by_ca.setdefault(item.ca_connector_id, []).append(item)
    for connector_id, group in by_ca.items():
        settled = issue_group(group[0].item_id, [i.item_id for i in group], connector_id)
        serials.update(settled.serials)
        for item in group:
            if item.item_id in settled.failures:
                refused.add(item.item_id)
                reason = settled.failures[item.item_id]
                set_state(item.item_id, FAILED, reason=f"issue failed: {reason}")
                batch.failed(f"certificate {item.certificate_id}: issue failed: {reason}", stop_at_once=item.canary)
    issued = []
    for item in items:
        serial = serials.get(item.item_id)
        if serial is None and item.item_id not in refused:
            serial = _issue(item, batch)
        if serial is not None:
            issued.append((item, serial))
    return issued


def _deploy_alone(item: Planned, serial: str, batch: _Batch, chosen: windows.Split | None = None) -> None:
    """One certificate deployed on its own: to every target, or (`chosen`) to the targets that may be deployed
    now, the others scheduled for their maintenance windows."""
    only = chosen.now if chosen is not None else None
    done, failure = deploy_everywhere(item.certificate_id, holding=batch.slots.server_ids, only=only)
    if failure is not None:
        _deploy_failed(item, failure, batch)
    elif chosen is not None and chosen.later:
        _wait_for_window(item, chosen, deployment_ids=done)
    else:
        set_state(item.item_id, DEPLOYED, serial=serial, deployment_ids=done)


def _deploy_failed(item: Planned, failure: str, batch: _Batch) -> None:
    set_state(item.item_id, FAILED, reason=f"deploy failed: {failure}", deployment_ids=[])
    batch.failed(f"certificate {item.certificate_id}: {failure}", stop_at_once=item.canary)


def _rotate_group(items: list[Planned], batch: _Batch) -> None:
    """A group of certificates (one server's, or a few small servers' together): issued together, then deployed
    with one config test and one reload per server (certfleet.tasks.deploy_group, each step journalled in one
    transaction for all the servers); what cannot be grouped is deployed one by one, as before."""
    issued = _deployable_now(_issue_all(items, batch), batch)
    if not issued:
        return
    groups: dict[int, list[int]] = {}
    for item, _ in issued:
        if item.server_id is not None:
            groups.setdefault(item.server_id, []).append(item.certificate_id)
    first = issued[0][0].certificate_id
    if len(groups) == 1:
        ((server_id, certificate_ids),) = groups.items()
        outcome = deploy_group(server_id, first, certificate_ids)
    else:
        outcome = deploy_groups(first, list(groups.items())) if groups else GroupOutcome()
    outcome.alone += [item.certificate_id for item, _ in issued if item.server_id is None]
    set_deployed(
        {
            item.item_id: (serial, outcome.deployed[item.certificate_id])
            for item, serial in issued
            if item.certificate_id in outcome.deployed
        }
    )
    for item, serial in issued:
        certificate_id = item.certificate_id
        if certificate_id in outcome.deployed:
            continue
        if certificate_id in outcome.failed:
            _deploy_failed(item, outcome.failed[certificate_id], batch)
        elif not batch.stopped:  # handed back: deployed alone (a stopped batch leaves it issued, not deployed)
            _deploy_alone(item, serial, batch)


def _deployable_now(issued: list[tuple[Planned, str]], batch: _Batch) -> list[tuple[Planned, str]]:
    """The issued items whose targets may all be deployed now; the others wait for their maintenance windows, all
    their targets (nothing deployed now) or some (the others deployed now, alone)."""
    split: dict[int, windows.Split] = {}  # the items with a target outside its maintenance window
    if not batch.ignore_windows:
        for item, _ in issued:
            chosen = windows.split(item.certificate_id, ignore_windows=False)
            if chosen.later:
                split[item.item_id] = chosen
    for item, serial in issued:
        waits = split.get(item.item_id)
        if waits is not None and waits.now == []:  # every target waits: nothing to deploy now
            _wait_for_window(item, waits)
        elif waits is not None:  # some targets now, some later: not grouped
            _deploy_alone(item, serial, batch, waits)
    return [(item, serial) for item, serial in issued if item.item_id not in split]


def _let_go_of_task_runs() -> None:
    """Prefect keeps each task run called inside a server task (issue-group, deploy-group, ...: its engine,
    parameters and result) as a child of the server task's transaction until the server's last certificate, to
    commit or roll them back with it: memory grew with the certificates of a server. They are done, cache nothing
    and undo nothing on a rollback (the journal does), so the finished ones are let go after each group."""
    txn = get_transaction()
    if txn is not None:
        txn.children.clear()


@task(cache_policy=NO_CACHE, task_run_name="rotate-on-{server_label}")
def rotate_on_server(batch_key: str, server_label: str, items: ServerItems) -> int:
    """One server's certificates (or a pack of small servers', in server order), a group at a time (read then);
    stops starting new groups once the batch is stopped."""
    batch = _batches[batch_key]
    started = 0
    for first in range(0, len(items.item_ids), GROUP):  # the stage holds the servers' slots (_run_stage)
        if batch.stopped:
            break
        batch.slots.check()  # lost: another batch may be on the servers now
        group = read_items(batch_key, items.item_ids[first : first + GROUP])
        started += len(group)
        _rotate_group(group, batch)
        _let_go_of_task_runs()
    return started


@task(cache_policy=NO_CACHE, task_run_name="rotate-on-{server_label}-by-bot")
def rotate_by_bot(batch_key: str, server_label: str, items: ServerItems, start_timeout: float) -> int:
    """One server of another bot: its certificates issued here a few at a time (read then), each few deployed by a
    `rotate-on-bot` run on the bot's queue; stops once the batch is stopped or the bot does not do its part."""
    batch = _batches[batch_key]
    started = 0
    ids = items.item_ids
    for first in range(0, len(ids), bots.CHUNK):
        if batch.stopped:
            break
        chunk = read_items(batch_key, ids[first : first + bots.CHUNK])
        if not chunk:  # their certificates were deleted meanwhile
            continue
        unavailable = bots.unavailable(chunk[0].bot_id)
        if unavailable is not None:
            _not_started(batch_key, ids[first:], unavailable, batch)
            break
        issued = []
        splits: dict[int, windows.Split] = {}
        for item in chunk:
            if batch.stopped:
                break
            started += 1
            if _issue(item, batch) is None:
                continue
            chosen = splits[item.item_id] = windows.split(item.certificate_id, ignore_windows=batch.ignore_windows)
            if chosen.now == []:  # every target waits for its window: nothing for the bot to do now
                _wait_for_window(item, chosen)
            else:
                issued.append(item)
        only = {i.certificate_id: now for i in issued if (now := splits[i.item_id].now) is not None}
        if issued and not bots.deploy(batch_key, issued, batch, start_timeout, only):
            _not_started(batch_key, ids[first + bots.CHUNK :], f"bot {chunk[0].bot_name} did not take its run", batch)
            break
        for item in issued:  # deployed where it may be now: the rest waits for the window
            if splits[item.item_id].later and item_state(item.item_id) == DEPLOYED:
                _wait_for_window(item, splits[item.item_id])
        _let_go_of_task_runs()
    return started


def _packs(servers: list[ServerItems]) -> list[ServerItems]:
    """The servers' items, one task each, but small servers packed together (in server order) so each task has
    about its share of them: their certificates are issued together, the CA called for several at once, instead
    of one server task (and one issue, one deploy task run) per certificate."""
    small: list[ServerItems] = []
    packs: list[list[ServerItems]] = []
    for part in servers:
        if len(part.item_ids) < GROUP and part.server_id is not None:
            small.append(part)
        else:
            packs.append([part])
    size = min(GROUP, max(1, math.ceil(sum(len(p.item_ids) for p in small) / PARALLEL_SERVERS)))
    pack: list[ServerItems] = []
    for part in small:
        if pack and sum(len(p.item_ids) for p in pack) + len(part.item_ids) > size:
            packs.append(pack)
            pack = []
        pack.append(part)
    if pack:
        packs.append(pack)
    return [
        ServerItems(
            server_id=parts[0].server_id,
            server_label=parts[0].server_label + (f" and {len(parts) - 1} more" if len(parts) > 1 else ""),
            local=True,
            item_ids=array("q", [i for p in parts for i in p.item_ids]),
        )
        if len(parts) > 1
        else parts[0]
        for parts in packs
    ]


def _not_started(batch_key: str, item_ids: Sequence[int], reason: str, batch: _Batch) -> None:
    """A bot's items it cannot do, read and recorded a chunk at a time."""
    for first in range(0, len(item_ids), bots.CHUNK):
        bots.not_started(read_items(batch_key, item_ids[first : first + bots.CHUNK]), reason, batch)


def _run_stage(batch_key: str, servers: list[ServerItems], start_timeout: float) -> None:
    """The servers' tasks, several at once, while the stage holds a slot of each server this process deploys the
    items to (one call to Prefect for the stage, not one per server task)."""
    batch = _batches[batch_key]
    local = [p for p in servers if p.local]
    held = {p.server_id for p in local if p.server_id is not None}
    with StageSlots(held | local_servers(i for p in local for i in p.item_ids)) as batch.slots:
        futures = [
            rotate_by_bot.submit(batch_key, part.server_label, part, start_timeout)
            for part in servers
            if not part.local
        ] + [rotate_on_server.submit(batch_key, pack.server_label, pack) for pack in _packs(local)]
        wait(futures)
    for future in futures:
        future.result()  # a crash in a server task fails the run (what it recorded stays)


def _roll_back(batch_key: str, reason: str, start_timeout: float) -> list[str]:
    problems = []
    deployed = deployed_items(batch_key)
    # Runs waiting for a maintenance window would deploy later what the batch takes back: cancelled first.
    for changed in deployed:
        if changed.waiting:
            windows.withdraw(changed.certificate_id, f"rotate-batch {batch_key} stopped")
    # Deployments made by bots are put back by those bots first (one run per bot); then the rest, here, a server's
    # deployments together (one config check and one reload per group).
    elsewhere = bots.roll_back(batch_key, [d for c in deployed for d in c.deployment_ids], reason, start_timeout)
    here = [d for c in deployed for d in reversed(c.deployment_ids) if d not in elsewhere]
    outcome = elsewhere | roll_back_deployments(here, f"rotate-batch {batch_key} stopped: {reason}")
    for changed in deployed:
        item_id = changed.item_id
        outcomes = [outcome[d] for d in reversed(changed.deployment_ids)]
        if all(o == DeploymentStatus.ROLLED_BACK.value for o in outcomes):
            set_state(item_id, ROLLED_BACK, reason=f"batch stopped: {reason}", deployment_ids=[])
        else:
            problems.append(f"item {item_id}: {', '.join(outcomes)}")
            set_state(item_id, FAILED, reason=f"batch stopped, rollback incomplete: {', '.join(outcomes)}")
    return problems


def _artifact(batch_key: str, stopped: str | None) -> None:
    rows = [asdict(r) for r in summary_rows(batch_key)]
    create_table_artifact(
        key=f"rotation-{batch_key}"[:100],
        table=rows,
        description=f"rotate-batch {batch_key}: " + (f"stopped ({stopped})" if stopped else "completed"),
    )


@flow(name="rotate-batch", flow_run_name=_run_name, task_runner=_threads(PARALLEL_SERVERS))
def rotate_batch(
    certificate_ids: list[int] | None = None,
    batch_name: str | None = None,
    ca_connector_id: int | None = None,
    tag: str | None = None,
    status: str | None = None,
    expiring_within_days: int | None = None,
    canary_per_server_type: int = 1,
    failure_budget: float = 0.05,
    ca_concurrency: int = 4,
    server_concurrency: int = 1,
    bot_start_timeout: int = 300,
    ignore_maintenance_windows: bool = False,
    batch_key: str | None = None,
) -> dict[str, int]:
    """Choose the certificates one way (ids, Batch Name, or a filter), then re-key, re-issue and deploy each.
    A certificate whose servers are outside their maintenance window is issued and its deployment scheduled for
    the window (Waiting For Window), unless `ignore_maintenance_windows` (audited).
    Re-run with the same `batch_key` to continue a stopped batch (default key: `rotate-<flow run id>`).
    Returns the count of certificates per state; fails when the batch stopped."""
    request = RotationRequest.model_validate(
        {
            "certificate_ids": certificate_ids,
            "batch_name": batch_name,
            "ca_connector_id": ca_connector_id,
            "tag": tag,
            "status": status,
            "expiring_within_days": expiring_within_days,
            "canary_per_server_type": canary_per_server_type,
            "failure_budget": failure_budget,
            "ca_concurrency": ca_concurrency,
            "server_concurrency": server_concurrency,
            "bot_start_timeout": bot_start_timeout,
            "ignore_maintenance_windows": ignore_maintenance_windows,
            "batch_key": batch_key,
        }
    )
    key = batch_key or f"rotate-{flow_run.id}"
    logger = get_run_logger()
    plan = plan_rotation(key, request)
    _ensure_limits(plan, ca_concurrency, server_concurrency)
    if ignore_maintenance_windows:
        note_ignoring_windows(key, f"run {flow_run.name or flow_run.id}")
    counted = plan.counted
    batch = _batches[key] = _Batch(
        allowed_failures=math.floor(failure_budget * counted),
        ignore_windows=ignore_maintenance_windows or not windows.any_window(),
    )
    stopped: str | None = None
    with earlier_objects_frozen():  # a batch's full garbage collections skip what was there before it
        try:
            if plan.canaries:
                _run_stage(key, plan.canaries, bot_start_timeout)
                if batch.failures:
                    stopped = "canary failed: " + "; ".join(batch.failures)
            if stopped is None:
                _run_stage(key, plan.rest, bot_start_timeout)
                if batch.stopped:
                    stopped = (
                        f"failure budget exceeded: {len(batch.failures)} failed, at most {batch.allowed_failures} "
                        f"of {counted} allowed ({failure_budget:.0%}): " + "; ".join(batch.failures[:5])
                    )
            if stopped is not None:
                logger.warning("batch %s stopped, rolling back what it deployed: %s", key, stopped)
                problems = _roll_back(key, stopped, bot_start_timeout)
                if problems:
                    stopped += "; rollback incomplete: " + "; ".join(problems)
        finally:
            for name in list(batch.go_variables):
                batch.close_go(name)
            _batches.pop(key, None)
            release_ca_slots()
            release_connections()
    _artifact(key, stopped)
    counts: dict[str, int] = {}
    for row in summary_rows(key):
        for name, value in asdict(row).items():
            if name != "server":
                counts[name] = counts.get(name, 0) + value
    logger.info("batch %s: %s", key, counts)
    if stopped is not None:
        raise RotationStopped(f"batch {key} stopped: {stopped}")
    return counts
