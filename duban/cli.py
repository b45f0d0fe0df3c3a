"""The one command line: `duban ...`. Each command is one transaction, committed here."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import generate_password_hash

from engine import clock, db
from engine.accounts import create_account, issue_token
from engine.deploy import deploy, deploy_directory, process_files
from engine.directory import find_unit, hand_over, holders, load_directory, position_of
from engine.errors import DubanError, FormError, ImportErrors
from engine.models import Account, HumanTask, Instance, Person, Plan, Position, PositionKind, Unit
from engine.routing import hand_out
from engine.runtime import Actor, complete_task, history, open_tasks, start_deferred
from engine.tasklists import import_plan

from .config import DATA_DIR, PROCESSES_DIR, database_url


class Context:
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = None

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        if self._engine is None:
            self._engine = db.make_engine(self.url)
        return self._engine

    @property
    def sessions(self) -> sessionmaker[Session]:
        return db.session_factory(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One command, one transaction: any error rolls back everything it did."""
        try:
            with db.session_factory(self.engine).begin() as session:
                yield session
        except ImportErrors as exc:
            raise click.ClickException(
                f"{exc.source}: nothing was imported; {len(exc.problems)} problem(s):\n  "
                + "\n  ".join(exc.problems)
            ) from None
        except FormError as exc:
            raise click.ClickException(
                "form not accepted, nothing was changed:\n  "
                + "\n  ".join(f"{field}: {msg}" for field, msg in exc.errors.items())
            ) from None
        except DubanError as exc:
            raise click.ClickException(str(exc)) from None
        except (OperationalError, ProgrammingError) as exc:
            # A database that is missing, unreachable or not migrated: say so, not a traceback.
            missing = "no such table" in str(exc.orig) or "does not exist" in str(exc.orig)
            hint = "; run `duban db upgrade` first" if missing else ""
            raise click.ClickException(
                f"database {self.engine.url.render_as_string(hide_password=True)}: "
                f"{str(exc.orig).strip().splitlines()[0]}{hint}; nothing was changed"
            ) from None


pass_ctx = click.make_pass_decorator(Context)
DEMO_PASSWORD = "duban-demo"


@click.group()
@click.option(
    "--database",
    envvar="DUBAN_DATABASE_URL",
    default=None,
    help="SQLAlchemy URL (default: $DUBAN_DATABASE_URL or SQLite in ./var).",
)
@click.pass_context
def main(ctx: click.Context, database: str | None) -> None:
    """督办 duban: supervise task-division lists with BPMN."""
    ctx.obj = Context(database or database_url())


@main.group("db")
def db_group() -> None:
    """Schema migrations."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Migrate the schema up to REVISION (default: head)."""
    db.upgrade(ctx.engine, revision)
    click.echo(f"schema at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(ctx: Context, revision: str) -> None:
    db.downgrade(ctx.engine, revision)
    click.echo(f"schema at {revision}")


@main.command("directory")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path), required=True)
@pass_ctx
def directory_cmd(ctx: Context, files: tuple[Path, ...]) -> None:
    """Load jurisdictions, units, positions and people from directory files."""
    with ctx.transaction() as session:
        for path in files:
            counts = load_directory(session, path, clock.utcnow())
            click.echo(f"{path}: " + ", ".join(f"{v} new {k}" for k, v in counts.items()))


@main.command("import")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path), required=True)
@pass_ctx
def import_cmd(ctx: Context, files: tuple[Path, ...]) -> None:
    """Import task-division lists (all files, or none)."""
    with ctx.transaction() as session:
        for path in files:
            result = import_plan(session, path)
            state = "imported" if result.changed else "unchanged"
            click.echo(f"{path}: {result.plan_key}, {result.tasks} tasks, {state}")


@main.command("import-excel")
@click.argument("path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--key", required=True, help="The list's key, e.g. weixi-2024-3.")
@click.option("--title", required=True, help="The plan's title.")
@click.option("--jurisdiction", required=True, help="Jurisdiction code, e.g. weixi.")
@click.option("--document-number", default="", help="e.g. 维发〔2024〕3号")
@click.option("--issued-on", type=click.DateTime(["%Y-%m-%d"]), default=None)
@pass_ctx
def import_excel_cmd(
    ctx: Context,
    path: Path,
    key: str,
    title: str,
    jurisdiction: str,
    document_number: str,
    issued_on: Any,
) -> None:
    """Import a list from an Excel sheet laid out like the seeds (序号, 工作任务, 责任单位)."""
    from engine.excel_import import import_workbook

    with ctx.transaction() as session, click.progressbar(length=1, label="rows") as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        result = import_workbook(
            session,
            path,
            key,
            title,
            jurisdiction,
            document_number,
            issued_on.date() if issued_on else None,
            progress,
        )
    state = "imported" if result.changed else "unchanged"
    click.echo(f"{path}: {result.plan_key}, {result.tasks} tasks, {state}")


@main.command("deploy")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--by", default="cli", help="Recorded as the deployer.")
@pass_ctx
def deploy_cmd(ctx: Context, paths: tuple[Path, ...], by: str) -> None:
    """Deploy BPMN/DMN files (default: the processes/ directory)."""
    with ctx.transaction() as session:
        results = deploy(session, process_files(list(paths) or [PROCESSES_DIR]), by)
        for r in results:
            click.echo(f"{r.process_id} v{r.version} {'deployed' if r.created else 'unchanged'}")


@main.command("seed")
@click.option("--demo", is_flag=True, help=f"Also create demo sign-ins (password {DEMO_PASSWORD}).")
@pass_ctx
def seed_cmd(ctx: Context, demo: bool) -> None:
    """Migrate, load the seed directory and task lists, deploy processes (idempotent)."""
    db.upgrade(ctx.engine)
    with ctx.transaction() as session:
        seed(session)
        if demo:
            for line in demo_accounts(session):
                click.echo(line)
    click.echo("seeded: directory, task lists and processes are current")


def seed(session: Session) -> None:
    for path in sorted((DATA_DIR / "directory").glob("*.toml")):
        load_directory(session, path, clock.utcnow())
    for path in sorted((DATA_DIR / "tasklists").glob("*.toml")):
        import_plan(session, path)
    deploy_directory(session, PROCESSES_DIR, "seed")


def demo_accounts(session: Session) -> list[str]:
    """Sign-ins for trying duban out: an administrator, everyone holding (or a demo person
    filling) a liaison, office, reviewer or joint-meeting seat, and an applicant for medical
    assistance. Never for production data."""
    made = []
    shared_hash = generate_password_hash(DEMO_PASSWORD)  # one slow hash, not one per account
    admin = session.scalar(select(Account).where(Account.login == "admin"))
    if admin is None:
        person = Person(name="系统管理员", title="administrator")
        session.add(person)
        create_account(
            session, person, "admin", DEMO_PASSWORD, is_admin=True, password_hash=shared_hash
        )
        made.append(f"admin / {DEMO_PASSWORD}  (administrator)")
    if session.scalar(select(Account).where(Account.login == "applicant")) is None:
        person = Person(name="演示申请人")
        session.add(person)
        create_account(session, person, "applicant", DEMO_PASSWORD, password_hash=shared_hash)
        made.append(f"applicant / {DEMO_PASSWORD}  (applies for medical assistance at /apply)")
    seats = session.scalars(
        select(Position)
        .where(
            Position.kind.in_(
                [
                    PositionKind.LIAISON,
                    PositionKind.OFFICE_DIRECTOR,
                    PositionKind.OFFICE_STAFF,
                    PositionKind.REVIEWER,
                    PositionKind.CONVENER,
                    PositionKind.DEPUTY_CONVENER,
                    PositionKind.MEMBER,
                ]
            )
        )
        .order_by(Position.id)
    )
    for seat in seats:
        people = holders(session, seat.id)
        if not people:
            person = Person(name=f"{seat.unit.name}{seat.title}", title=seat.title)
            session.add(person)
            hand_over(session, seat, person, clock.utcnow())
            people = [person]
        for person in people:
            if session.scalar(select(Account.id).where(Account.person_id == person.id)) is None:
                create_account(
                    session, person, person.name, DEMO_PASSWORD, password_hash=shared_hash
                )
                made.append(f"{person.name} / {DEMO_PASSWORD}  ({seat.unit.name} {seat.title})")
    return made


@main.group("account")
def account_group() -> None:
    """Sign-in accounts and API tokens."""


@account_group.command("create")
@click.option("--person", "person_name", required=True, help="The person's name.")
@click.option("--title", default="", help="Job title, to tell people of the same name apart.")
@click.option("--login", required=True)
@click.option("--admin", "is_admin", is_flag=True)
@click.password_option(help="Initial password (asked for when not given).")
@pass_ctx
def account_create(
    ctx: Context, person_name: str, title: str, login: str, is_admin: bool, password: str
) -> None:
    """Create a sign-in for a person (created when not in the directory yet)."""
    with ctx.transaction() as session:
        person = session.scalar(
            select(Person).where(Person.name == person_name, Person.title == title)
        )
        if person is None:
            person = Person(name=person_name, title=title)
            session.add(person)
        create_account(session, person, login, password, is_admin=is_admin)
    click.echo(f"account '{login}' created for {person_name}")


@account_group.command("token")
@click.option("--login", required=True)
@click.option("--name", default="cli", help="What the token is for.")
@pass_ctx
def account_token(ctx: Context, login: str, name: str) -> None:
    """Issue an API token (shown once; duban keeps only its hash)."""
    with ctx.transaction() as session:
        account = session.scalar(select(Account).where(Account.login == login))
        if account is None:
            raise click.ClickException(f"no account '{login}'")
        click.echo(issue_token(session, account, name))


@main.command("plans")
@pass_ctx
def plans_cmd(ctx: Context) -> None:
    """List imported plans."""
    with ctx.transaction() as session:
        for plan in session.scalars(select(Plan).order_by(Plan.id)):
            click.echo(f"{plan.key}\t{len(plan.tasks)} tasks\t{plan.document_number}\t{plan.title}")


@main.command("hand-out")
@click.argument("plan")
@click.option("--task", "numbers", type=int, multiple=True, help="Task number (repeatable).")
@pass_ctx
def hand_out_cmd(ctx: Context, plan: str, numbers: tuple[int, ...]) -> None:
    """Start routing for a plan's tasks (all not yet handed out, or --task N ...)."""
    with ctx.transaction() as session:
        started = hand_out(session, plan, list(numbers) or None, clock.utcnow())
        for inst in started:
            click.echo(f"instance {inst.id}\t{inst.business_key}")
        click.echo(f"{len(started)} item(s) handed out")
    _start_deferred(ctx)


def _unit(session: Session, name: str) -> Unit:
    jurisdiction, _, unit_name = name.rpartition("/")
    return find_unit(session, unit_name, jurisdiction or None)


@main.command("tasks")
@click.option("--unit", "unit_name", help="Only this unit's steps (name or alias).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def tasks_cmd(ctx: Context, unit_name: str | None, as_json: bool) -> None:
    """List open human steps, most urgent first."""
    with ctx.transaction() as session:
        unit_ids = [_unit(session, unit_name).id] if unit_name else None
        rows = open_tasks(session, unit_ids)
        out = [
            {
                "step": t.id,
                "instance": t.instance_id,
                "item": t.instance.business_key,
                "name": t.name,
                "form": t.form,
                "unit": t.unit.name if t.unit else "applicant",
                "position": t.position.kind.value if t.position else None,
                "due": clock.as_utc(t.due_at).astimezone(clock.LOCAL_TZ).date().isoformat()
                if t.due_at
                else None,
            }
            for t in rows
        ]
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for r in out:
        click.echo(
            f"{r['step']}\t{r['item']}\t{r['name']}\t{r['unit']}/{r['position']}\t{r['due'] or '-'}"
        )
    click.echo(f"{len(out)} open step(s)")


def _parse_fields(pairs: tuple[str, ...], data_json: str | None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(data_json) if data_json else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"'{pair}' is not key=value", param_hint="--set")
        data[key] = value
    return data


# Ids are 32-bit in the database: a larger number names nothing (and would overflow the driver).
ID = click.IntRange(1, 2**31 - 1)


@main.command("complete")
@click.argument("step", type=ID)
@click.option(
    "--as",
    "as_",
    required=True,
    metavar="UNIT[:POSITION]",
    help="The unit (and position, default liaison) acting, e.g. 县卫生健康局:liaison.",
)
@click.option("--set", "pairs", multiple=True, metavar="FIELD=VALUE", help="A form field.")
@click.option("--data", "data_json", help="Form fields as a JSON object.")
@pass_ctx
def complete_cmd(
    ctx: Context, step: int, as_: str, pairs: tuple[str, ...], data_json: str | None
) -> None:
    """Complete an open step for a unit's position."""
    try:
        data = _parse_fields(pairs, data_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    unit_name, _, kind = as_.partition(":")
    with ctx.transaction() as session:
        unit = _unit(session, unit_name)
        position = position_of(session, unit, kind or "liaison")
        actor = Actor(position_id=position.id, label=f"cli:{unit.name}/{position.kind.value}")
        task = complete_task(session, step, actor, data, clock.utcnow())
        # The step may be in a unit's branch, which ends with it: report the item as a whole.
        item = session.get(Instance, task.instance.root_id or task.instance_id)
        assert item is not None
        click.echo(
            f"step {task.id} ({task.name}) completed; {item.business_key} is {item.status.value}"
        )
    _start_deferred(ctx)


def _start_deferred(ctx: Context) -> None:
    """Branches of a wide fan-out start after the step's commit; the command waits for them."""
    started = start_deferred(ctx.sessions, clock.utcnow())
    if started:
        click.echo(f"{started} branch(es) started")


@main.command("show")
@click.argument("instance")
@pass_ctx
def show_cmd(ctx: Context, instance: str) -> None:
    """An instance (id or business key): status, open steps, history."""
    with ctx.transaction() as session:
        # Branches share their item's business key; the key names the top-level instance.
        if instance.isascii() and instance.isdigit():
            number = int(instance)
            query = select(Instance).where(Instance.id == (number if number < 2**31 else 0))
        else:
            query = select(Instance).where(
                Instance.business_key == instance, Instance.parent_id.is_(None)
            )
        inst = session.scalar(query)
        if inst is None:
            raise click.ClickException(f"no instance '{instance}'")
        click.echo(
            f"instance {inst.id} {inst.business_key} {inst.process_id} "
            f"v{inst.version.version} {inst.status.value}"
        )
        tree = select(Instance.id).where(Instance.root_id == inst.root_id)
        for t in session.scalars(
            select(HumanTask).where(HumanTask.instance_id.in_(tree)).order_by(HumanTask.id)
        ):
            owner = t.unit.name if t.unit else "applicant"
            click.echo(f"  step {t.id}\t{t.state.value}\t{t.name}\t{owner}")
        for h in history(session, inst.root_id or inst.id):
            click.echo(
                f"  {h.at:%Y-%m-%d %H:%M}\t{h.action}\t{h.actor_label}\t"
                f"{json.dumps(h.data, ensure_ascii=False) if h.data else ''}"
            )


@main.command("hand-over")
@click.option("--unit", "unit_name", required=True)
@click.option("--position", "kind", default="liaison", show_default=True)
@click.option("--to", "successor", required=True, help="The successor's name.")
@click.option("--title", default="", help="The successor's job title.")
@pass_ctx
def hand_over_cmd(ctx: Context, unit_name: str, kind: str, successor: str, title: str) -> None:
    """Give a position to a successor; its open work follows at once."""
    with ctx.transaction() as session:
        unit = _unit(session, unit_name)
        position = position_of(session, unit, kind)
        person = session.scalar(
            select(Person).where(Person.name == successor, Person.title == title)
        )
        if person is None:
            person = Person(name=successor, title=title)
            session.add(person)
        hand_over(session, position, person, clock.utcnow())
        click.echo(f"{unit.name} {position.title}: now held by {successor}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--seed/--no-seed",
    "do_seed",
    default=True,
    show_default=True,
    help="Migrate and load the seed data first.",
)
@click.option("--demo", is_flag=True, help="Create demo sign-ins when seeding.")
@click.option(
    "--scheduler/--no-scheduler",
    default=True,
    show_default=True,
    help="Run the scheduler (reminders, escalations, e-mail) inside this process.",
)
@pass_ctx
def serve_cmd(
    ctx: Context, host: str, port: int, do_seed: bool, demo: bool, scheduler: bool
) -> None:
    """Run duban on this machine (the embedded default; use gunicorn in production)."""
    from werkzeug.serving import run_simple

    from web import create_app

    from .scheduler import Jobs, build

    if do_seed:
        db.upgrade(ctx.engine)
        with ctx.transaction() as session:
            seed(session)
            for line in demo_accounts(session) if demo else []:
                click.echo(line)
    app = create_app({"DATABASE_URL": ctx.url})
    if scheduler:
        background = build(Jobs(ctx.sessions, base_url=f"http://{host}:{port}"), blocking=False)
        background.start()
    click.echo(f"duban on http://{host}:{port}/ ({ctx.url})")
    run_simple(host, port, app, threaded=True)


@main.command("scheduler")
@click.option("--once", is_flag=True, help="Run every job once and exit (for cron or a check).")
@click.option(
    "--base-url", default="", help="Prefix for links in e-mails, e.g. https://duban.example"
)
@pass_ctx
def scheduler_cmd(ctx: Context, once: bool, base_url: str) -> None:
    """Fire due reminders and escalations, send the outbox, start the yearly collections."""
    import logging

    from .scheduler import Jobs, build

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    jobs = Jobs(ctx.sessions, base_url=base_url)
    if once:
        jobs.once()
        return
    click.echo(f"duban scheduler on {ctx.url}")
    build(jobs, blocking=True).start()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
