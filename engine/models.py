"""The tables duban keeps. The workflow state is a JSON blob; everything a screen or a sweep
queries (human tasks, history) is mirrored into plain indexed columns beside it."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .clock import utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Store the value (stable, readable in SQL) rather than the member name.
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class Timestamp(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given: duban stores UTC-aware times only")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Level(enum.StrEnum):
    PREFECTURE = "prefecture"
    COUNTY = "county"
    TOWNSHIP = "township"


class UnitKind(enum.StrEnum):
    DEPARTMENT = "department"
    PARTY = "party"
    GOVERNMENT = "government"
    LOCAL_GOVERNMENT = "local_government"
    PEOPLE_ORG = "people_org"
    OTHER = "other"


class PositionKind(enum.StrEnum):
    LIAISON = "liaison"
    HEAD = "head"
    MEMBER = "member"
    CONVENER = "convener"
    DEPUTY_CONVENER = "deputy_convener"
    OFFICE_DIRECTOR = "office_director"
    OFFICE_STAFF = "office_staff"
    REVIEWER = "reviewer"


class Role(enum.StrEnum):
    LEAD = "lead"
    SUPPORT = "support"
    IMPLEMENT = "implement"


class InstanceStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class TaskState(enum.StrEnum):
    READY = "ready"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Jurisdiction(Base):
    __tablename__ = "jurisdiction"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    short_name: Mapped[str] = mapped_column(String(50), default="")
    level: Mapped[Level] = mapped_column(_enum(Level))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdiction.id"))
    # The unit hosting the joint-meeting office: the office reviews and closes routed items.
    office_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("unit.id", use_alter=True, name="fk_jurisdiction_office_unit_id_unit")
    )

    parent: Mapped[Jurisdiction | None] = relationship(remote_side=[id])

    @property
    def display_name(self) -> str:
        return self.short_name or self.name


class Unit(Base):
    __tablename__ = "unit"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[UnitKind] = mapped_column(_enum(UnitKind))
    member: Mapped[bool] = mapped_column(default=False)

    jurisdiction: Mapped[Jurisdiction] = relationship(foreign_keys=[jurisdiction_id])
    aliases: Mapped[list[UnitAlias]] = relationship(
        back_populates="unit", cascade="all, delete-orphan"
    )
    positions: Mapped[list[Position]] = relationship(back_populates="unit")


class UnitAlias(Base):
    __tablename__ = "unit_alias"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "alias"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    # Repeated from the unit so that an alias is unique within its jurisdiction.
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    alias: Mapped[str] = mapped_column(String(100))

    unit: Mapped[Unit] = relationship(back_populates="aliases")


class Position(Base):
    """A seat in a unit (岗位). Work is assigned here, never to a person."""

    __tablename__ = "position"
    __table_args__ = (UniqueConstraint("unit_id", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    kind: Mapped[PositionKind] = mapped_column(_enum(PositionKind))
    title: Mapped[str] = mapped_column(String(100), default="")

    unit: Mapped[Unit] = relationship(back_populates="positions")


class Person(Base):
    __tablename__ = "person"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)


class Holding(Base):
    """Who holds a position, over which period. Open work follows the position, so a hand-over
    is just closing one holding and opening the next."""

    __tablename__ = "holding"
    __table_args__ = (Index("ix_holding_position_open", "position_id", "ended_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    position_id: Mapped[int] = mapped_column(ForeignKey("position.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(Timestamp())
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp())

    position: Mapped[Position] = relationship()
    person: Mapped[Person] = relationship()


class Plan(Base):
    """A policy plan's task-division list (重点任务分工清单)."""

    __tablename__ = "plan"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    list_title: Mapped[str] = mapped_column(String(100), default="")
    document_number: Mapped[str] = mapped_column(String(100), default="")
    issued_on: Mapped[date | None] = mapped_column(Date)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    content_hash: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)

    jurisdiction: Mapped[Jurisdiction] = relationship()
    tasks: Mapped[list[PlanTask]] = relationship(
        back_populates="plan", order_by="PlanTask.number", cascade="all, delete-orphan"
    )


class PlanTask(Base):
    __tablename__ = "plan_task"
    __table_args__ = (UniqueConstraint("plan_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    number: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # Set for a meeting's agreed items (their minutes give a date); the seed lists have none.
    due_on: Mapped[date | None] = mapped_column(Date)

    plan: Mapped[Plan] = relationship(back_populates="tasks")
    units: Mapped[list[PlanTaskUnit]] = relationship(
        back_populates="task", order_by="PlanTaskUnit.ordinal", cascade="all, delete-orphan"
    )

    def units_in(self, role: Role) -> list[Unit]:
        return [u.unit for u in self.units if u.role == role]


class PlanTaskUnit(Base):
    __tablename__ = "plan_task_unit"
    __table_args__ = (UniqueConstraint("plan_task_id", "role", "unit_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_task_id: Mapped[int] = mapped_column(ForeignKey("plan_task.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role))
    # Order as written in the list: the first lead unit is the one that consolidates.
    ordinal: Mapped[int] = mapped_column(Integer)

    task: Mapped[PlanTask] = relationship(back_populates="units")
    unit: Mapped[Unit] = relationship()


class ProcessVersion(Base):
    """One row per distinct content of a process (BPMN plus the DMN it calls)."""

    __tablename__ = "process_version"
    __table_args__ = (UniqueConstraint("process_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sources: Mapped[dict[str, str]] = mapped_column(JSON)
    # SpiffWorkflow's serialization of the parsed spec and its subprocess specs: instances
    # store only their own state and take the spec from here.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    deployed_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    deployed_by: Mapped[str] = mapped_column(String(100), default="")


class Instance(Base):
    """A running or finished process. A unit's branch of a routed item runs as a child instance
    of its own (see runtime: detached calls), so one step never loads every unit's branch."""

    __tablename__ = "instance"
    __table_args__ = (
        Index("ix_instance_siblings", "parent_id", "parent_element_id", "status"),
        # A business key names one top-level instance; children share their parent's.
        Index(
            "uq_instance_top_level_key",
            "process_id",
            "business_key",
            unique=True,
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"))
    process_id: Mapped[str] = mapped_column(String(100))
    business_key: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("instance.id"))
    # The top-level instance of the tree (itself for a top-level one): an item's whole history.
    root_id: Mapped[int | None] = mapped_column(ForeignKey("instance.id"), index=True)
    # The parent's waiting task this instance runs for; unique so a branch is spawned once.
    parent_task_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    # The parent's element (e.g. `reports`): siblings spawned by it finish the element together.
    parent_element_id: Mapped[str | None] = mapped_column(String(100))
    has_children: Mapped[bool] = mapped_column(default=False)
    plan_task_id: Mapped[int | None] = mapped_column(ForeignKey("plan_task.id"), index=True)
    # Whose rules apply (escalation lead times, cadence, grace); children inherit it.
    jurisdiction_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdiction.id"))
    status: Mapped[InstanceStatus] = mapped_column(_enum(InstanceStatus), index=True)
    # zlib-compressed JSON of the workflow state (spec excluded).
    state: Mapped[bytes] = mapped_column(LargeBinary)
    serializer_version: Mapped[str] = mapped_column(String(10))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp())

    version: Mapped[ProcessVersion] = relationship()
    plan_task: Mapped[PlanTask | None] = relationship()
    parent: Mapped[Instance | None] = relationship(remote_side=[id], foreign_keys=[parent_id])

    # Optimistic check on every save, on top of the row lock: a stale writer fails loudly.
    __mapper_args__ = {"version_id_col": revision}  # noqa: RUF012 (SQLAlchemy reads it)


class HumanTask(Base):
    """A mirror of one manual workflow task, so inbox and overdue queries never open a workflow."""

    __tablename__ = "human_task"
    __table_args__ = (
        Index("ix_human_task_inbox", "unit_id", "state", "due_at"),
        Index("ix_human_task_due", "state", "due_at"),
        # Open steps by position and by unit, in due order: the inbox (a small share of rows).
        Index(
            "ix_human_task_open_position",
            "position_id",
            "due_at",
            "id",
            sqlite_where=text("state = 'ready'"),
            postgresql_where=text("state = 'ready'"),
        ),
        Index(
            "ix_human_task_open_plan",
            "plan_id",
            "unit_id",
            sqlite_where=text("state = 'ready'"),
            postgresql_where=text("state = 'ready'"),
        ),
        Index(
            "ix_human_task_open_unit",
            "unit_id",
            "due_at",
            "id",
            sqlite_where=text("state = 'ready'"),
            postgresql_where=text("state = 'ready'"),
        ),
        UniqueConstraint("spiff_task_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    spiff_task_id: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    form: Mapped[str] = mapped_column(String(50))
    # A unit's step names the unit and the position; an applicant's own step (answering a
    # request for documents) names the applicant's account instead.
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    position_id: Mapped[int | None] = mapped_column(ForeignKey("position.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    # For a step of a routed item: its list and the unit's role in the item (lead / support /
    # implement / office), copied at creation so the dashboard counts open steps in one table.
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plan.id"))
    role: Mapped[str | None] = mapped_column(String(10))
    state: Mapped[TaskState] = mapped_column(_enum(TaskState))
    due_at: Mapped[datetime | None] = mapped_column(Timestamp())
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    claimed_at: Mapped[datetime | None] = mapped_column(Timestamp())
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp())
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    form_data: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    instance: Mapped[Instance] = relationship()
    unit: Mapped[Unit | None] = relationship()
    position: Mapped[Position | None] = relationship()


class HistoryEntry(Base):
    """Append-only: who did what, for which position, when."""

    __tablename__ = "history"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    human_task_id: Mapped[int | None] = mapped_column(ForeignKey("human_task.id"))
    action: Mapped[str] = mapped_column(String(50))
    actor_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    actor_position_id: Mapped[int | None] = mapped_column(ForeignKey("position.id"))
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(Timestamp())

    instance: Mapped[Instance] = relationship()
    human_task: Mapped[HumanTask | None] = relationship()


class Account(Base):
    """A person's sign-in. Rights come from the positions the person holds, not from here;
    `is_admin` only opens the administration screens (units, positions, deployments)."""

    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), unique=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str] = mapped_column(String(10), default="zh_CN")
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    # Named in every session cookie issued to the account; a cookie naming an older value is
    # refused, so a copy kept after sign-out or a password change opens nothing.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")

    person: Mapped[Person] = relationship()


class ApiToken(Base):
    """A bearer token for /api/v1. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp())

    account: Mapped[Account] = relationship()


class Comment(Base):
    __tablename__ = "comment"
    id: Mapped[int] = mapped_column(primary_key=True)
    # The routed item (top-level instance) the comment belongs to.
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    human_task_id: Mapped[int | None] = mapped_column(ForeignKey("human_task.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    position_id: Mapped[int] = mapped_column(ForeignKey("position.id"))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(Timestamp())

    person: Mapped[Person] = relationship()
    position: Mapped[Position] = relationship()


class Attachment(Base):
    """Evidence (佐证材料). The bytes live in the attachment store, addressed by their SHA-256;
    the row says who may see them (through the item) and what they are."""

    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    human_task_id: Mapped[int | None] = mapped_column(ForeignKey("human_task.id"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    position_id: Mapped[int] = mapped_column(ForeignKey("position.id"))
    at: Mapped[datetime] = mapped_column(Timestamp())

    uploaded_by: Mapped[Person] = relationship()
    position: Mapped[Position] = relationship()


# --- special-family medical assistance (计划生育特殊家庭医疗救助) ------------------------------


class ApplicationStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    DOCUMENTS_REQUESTED = "documents"  # waiting on the applicant
    APPROVED = "approved"
    REJECTED = "rejected"
    NOT_ELIGIBLE = "not_eligible"  # neither bureau confirmed the household
    REDIRECTED = "redirected"  # already on 低保 / 特困: applies through that scheme
    WITHDRAWN = "withdrawn"


class AssistanceSetting(Base):
    """Which units of a jurisdiction handle applications, and its local options."""

    __tablename__ = "assistance_setting"
    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"), unique=True)
    health_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    civil_affairs_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    rural_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    insurance_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    reviewer_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    # Dehong: the decision can also grant hardship relief and add the household to the
    # monitored list (监测对象).
    hardship_relief: Mapped[bool] = mapped_column(Boolean, default=False)

    jurisdiction: Mapped[Jurisdiction] = relationship()


class Application(Base):
    """One application for medical aid. The resident ID and the medical details are personal
    data: they stay in this row (never in the workflow state, history or URLs) and screens show
    them masked unless a step that needs them asks, which is recorded."""

    __tablename__ = "assistance_application"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    status: Mapped[ApplicationStatus] = mapped_column(_enum(ApplicationStatus))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instance.id"), unique=True)
    applicant_name: Mapped[str] = mapped_column(String(50), default="")
    resident_id: Mapped[str] = mapped_column(String(18), default="")
    phone: Mapped[str] = mapped_column(String(20), default="")
    address: Mapped[str] = mapped_column(String(200), default="")
    family_kind: Mapped[str] = mapped_column(String(20), default="")
    relationship_: Mapped[str] = mapped_column("relationship", String(20), default="")
    existing_support: Mapped[str] = mapped_column(String(20), default="")
    hospital: Mapped[str] = mapped_column(String(100), default="")
    diagnosis: Mapped[str] = mapped_column(String(200), default="")
    admitted_on: Mapped[date | None] = mapped_column(Date)
    discharged_on: Mapped[date | None] = mapped_column(Date)
    total_cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    basic_reimbursed: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    critical_reimbursed: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    # Set by the process as it goes; shown on the applicant's timeline and decision letter.
    confirmation: Mapped[str] = mapped_column(String(20), default="")
    aid_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    hardship_relief: Mapped[bool] = mapped_column(Boolean, default=False)
    monitored: Mapped[bool] = mapped_column(Boolean, default=False)
    # The figures behind the amount (verified reimbursements, deductible, rate, cap).
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    updated_at: Mapped[datetime] = mapped_column(Timestamp())
    submitted_at: Mapped[datetime | None] = mapped_column(Timestamp())
    decided_at: Mapped[datetime | None] = mapped_column(Timestamp())
    # When the applicant last looked: a later change is news for them (the in-app notice).
    seen_at: Mapped[datetime | None] = mapped_column(Timestamp())
    revision: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": revision}  # noqa: RUF012 (SQLAlchemy reads it)

    account: Mapped[Account] = relationship()
    jurisdiction: Mapped[Jurisdiction] = relationship()
    instance: Mapped[Instance | None] = relationship()
    files: Mapped[list[ApplicationFile]] = relationship(
        back_populates="application", order_by="ApplicationFile.id"
    )

    @property
    def remaining(self) -> Decimal | None:
        """What is left to pay after basic medical insurance and critical-illness insurance."""
        if self.total_cost is None:
            return None
        paid = (self.basic_reimbursed or Decimal(0)) + (self.critical_reimbursed or Decimal(0))
        return self.total_cost - paid


class ApplicationFile(Base):
    """A document the applicant attached (settlement statements, supplementary papers); the
    bytes are in the attachment store, addressed by SHA-256."""

    __tablename__ = "assistance_file"
    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("assistance_application.id"), index=True)
    # The request for documents this answered, if any.
    human_task_id: Mapped[int | None] = mapped_column(ForeignKey("human_task.id"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(Timestamp())

    application: Mapped[Application] = relationship(back_populates="files")


# --- the joint meeting (联席会议) ------------------------------------------------------------


class MeetingKind(enum.StrEnum):
    PLENARY = "plenary"  # 全体会议: every member
    THEMATIC = "thematic"  # 专题会议: chosen members


class MeetingStatus(enum.StrEnum):
    PLANNED = "planned"
    HELD = "held"
    CANCELLED = "cancelled"


class Attendance(enum.StrEnum):
    EXPECTED = "expected"
    PRESENT = "present"
    DELEGATE = "delegate"  # sent someone in their place
    ABSENT = "absent"


class MinutesStatus(enum.StrEnum):
    DRAFT = "draft"  # the office writes; members review; the office revises
    SIGNING = "signing"  # with the convener (or the delegated deputy)
    SIGNED = "signed"  # immutable; issued to the member units
    SUPERSEDED = "superseded"  # a signed correction replaced it


class JurisdictionSetting(Base):
    """Settings per jurisdiction that are policy, not code (dates, lead times)."""

    __tablename__ = "jurisdiction_setting"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(200))


class Meeting(Base):
    """A plenary or thematic meeting of a jurisdiction's joint meeting."""

    __tablename__ = "meeting"
    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"), index=True)
    kind: Mapped[MeetingKind] = mapped_column(_enum(MeetingKind))
    title: Mapped[str] = mapped_column(String(200))
    held_on: Mapped[date] = mapped_column(Date)
    place: Mapped[str] = mapped_column(String(200), default="")
    agenda: Mapped[str] = mapped_column(Text, default="")
    # Counts for the yearly rule: at least one comprehensive coordination meeting a year.
    comprehensive: Mapped[bool] = mapped_column(Boolean, default=False)
    # Chaired and signed by the convener, or by a deputy convener the convener delegates.
    chair_position_id: Mapped[int] = mapped_column(ForeignKey("position.id"))
    status: Mapped[MeetingStatus] = mapped_column(_enum(MeetingStatus))
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    revision: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": revision}  # noqa: RUF012 (SQLAlchemy reads it)

    jurisdiction: Mapped[Jurisdiction] = relationship()
    chair: Mapped[Position] = relationship()
    participants: Mapped[list[MeetingParticipant]] = relationship(
        back_populates="meeting", order_by="MeetingParticipant.id", cascade="all, delete-orphan"
    )
    minutes: Mapped[list[Minutes]] = relationship(
        back_populates="meeting", order_by="Minutes.version"
    )


class MeetingParticipant(Base):
    """A seat at the meeting (a position), or an invited unit or expert by name."""

    __tablename__ = "meeting_participant"
    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meeting.id"), index=True)
    position_id: Mapped[int | None] = mapped_column(ForeignKey("position.id"))
    invited: Mapped[str] = mapped_column(String(200), default="")  # an expert or other unit
    attendance: Mapped[Attendance] = mapped_column(_enum(Attendance))
    delegate: Mapped[str] = mapped_column(String(100), default="")  # who came instead

    meeting: Mapped[Meeting] = relationship(back_populates="participants")
    position: Mapped[Position | None] = relationship()


class Minutes(Base):
    """A version of a meeting's minutes (纪要). Signed minutes never change: a correction is a
    new version with its reason, which supersedes the old one once it is signed in turn."""

    __tablename__ = "minutes"
    __table_args__ = (UniqueConstraint("meeting_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meeting.id"))
    version: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(100), default="")  # 纪要编号
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[MinutesStatus] = mapped_column(_enum(MinutesStatus))
    correction_reason: Mapped[str] = mapped_column(Text, default="")
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instance.id"), unique=True)
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plan.id"))  # its agreed items, routed
    signed_at: Mapped[datetime | None] = mapped_column(Timestamp())
    signed_by_position_id: Mapped[int | None] = mapped_column(ForeignKey("position.id"))
    signed_by_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    revision: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": revision}  # noqa: RUF012 (SQLAlchemy reads it)

    meeting: Mapped[Meeting] = relationship(back_populates="minutes")
    items: Mapped[list[AgreedItem]] = relationship(
        back_populates="minutes", order_by="AgreedItem.number", cascade="all, delete-orphan"
    )
    signed_by_position: Mapped[Position | None] = relationship(foreign_keys=[signed_by_position_id])
    signed_by_person: Mapped[Person | None] = relationship()
    plan: Mapped[Plan | None] = relationship()


class AgreedItem(Base):
    """An agreed item (议定事项): once the minutes are signed it is routed like a list item."""

    __tablename__ = "agreed_item"
    __table_args__ = (UniqueConstraint("minutes_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    minutes_id: Mapped[int] = mapped_column(ForeignKey("minutes.id"))
    number: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    lead_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    support_unit_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    due_on: Mapped[date] = mapped_column(Date)

    minutes: Mapped[Minutes] = relationship(back_populates="items")
    lead_unit: Mapped[Unit] = relationship()


# --- due-date timers, notifications ---------------------------------------------------------


class TimerKind(enum.StrEnum):
    REMINDER = "reminder"  # before the due date
    OVERDUE = "overdue"  # at it
    URGE = "urge"  # 催办, repeatedly while overdue
    ESCALATE = "escalate"  # after the grace period: the unit head and the office director


class TimerState(enum.StrEnum):
    WAITING = "waiting"
    DONE = "done"  # fired (a repeating timer: its cycles are over) or its step ended


class DeferredStart(Base):
    """An instance whose detached calls are too many to start in the step that reached them:
    its branches are started after that step's commit, a batch per transaction
    (engine.runtime.start_deferred), by the scheduler or by the command that made the step."""

    __tablename__ = "deferred_start"
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), primary_key=True)
    since: Mapped[datetime] = mapped_column(Timestamp())


class Timer(Base):
    """A waiting timer boundary event of a workflow, with its next fire time copied out so the
    sweep reads exactly what is due through one index, however many steps are open."""

    __tablename__ = "timer"
    __table_args__ = (
        Index(
            "ix_timer_due",
            "fire_at",
            sqlite_where=text("state = 'waiting'"),
            postgresql_where=text("state = 'waiting'"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    spiff_task_id: Mapped[str] = mapped_column(String(36), unique=True)
    element_id: Mapped[str] = mapped_column(String(100))
    host_element_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[TimerKind] = mapped_column(_enum(TimerKind))
    fire_at: Mapped[datetime] = mapped_column(Timestamp())
    state: Mapped[TimerState] = mapped_column(_enum(TimerState))
    fired: Mapped[int] = mapped_column(Integer, default=0)

    instance: Mapped[Instance] = relationship()


class Notification(Base):
    """A message for one person (the in-app list); other channels deliver it via the outbox.
    `context` holds what the templates need, never personal data such as ID numbers."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_person_unread", "person_id", "read_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    event: Mapped[str] = mapped_column(String(40))
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    link: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp())
    read_at: Mapped[datetime | None] = mapped_column(Timestamp())

    person: Mapped[Person] = relationship()


class Outbox(Base):
    """One delivery of a notification over e-mail or webhook. Written in the transaction that
    caused it; sent after commit with retries and back-off; marked sent once, never resent."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_due",
            "next_attempt_at",
            sqlite_where=text("sent_at IS NULL"),
            postgresql_where=text("sent_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))  # email | webhook
    address: Mapped[str] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp())
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp())
    last_error: Mapped[str] = mapped_column(Text, default="")

    notification: Mapped[Notification] = relationship()


class ChannelPreference(Base):
    """A person's choice for a channel: on or off, and where (an e-mail address, a webhook URL).
    In-app notices are always kept; e-mail goes to the person's address unless one is given."""

    __tablename__ = "channel_preference"
    __table_args__ = (UniqueConstraint("person_id", "channel"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    channel: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    address: Mapped[str] = mapped_column(String(300), default="")


class CalendarRun(Base):
    """A calendar rule that has run for a period (a yearly collection started, a yearly warning
    sent): the unique key makes a second scheduler, or a restart, a no-op."""

    __tablename__ = "calendar_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    at: Mapped[datetime] = mapped_column(Timestamp())


# --- indicators (指标) --------------------------------------------------------------------------


class Indicator(Base):
    """A measurable target of a plan (childcare places, mortality rates ...): a target per year,
    the actual reported by the responsible unit through a routed step."""

    __tablename__ = "indicator"
    __table_args__ = (UniqueConstraint("jurisdiction_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction.id"))
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    measure: Mapped[str] = mapped_column(String(20), default="")  # 个, ‰, /10万, %
    # at_least: the actual must reach the target; at_most: it must stay at or below it.
    direction: Mapped[str] = mapped_column(String(10), default="at_least")
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))  # who reports it
    source: Mapped[str] = mapped_column(String(300), default="")

    unit: Mapped[Unit] = relationship()
    targets: Mapped[list[IndicatorTarget]] = relationship(
        back_populates="indicator", order_by="IndicatorTarget.year", cascade="all, delete-orphan"
    )


class IndicatorTarget(Base):
    __tablename__ = "indicator_target"
    __table_args__ = (UniqueConstraint("indicator_id", "year"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicator.id"))
    year: Mapped[int] = mapped_column(Integer)
    target: Mapped[Decimal] = mapped_column(Numeric(14, 3))

    indicator: Mapped[Indicator] = relationship(back_populates="targets")


class IndicatorActual(Base):
    """What the responsible unit reported for a year (the latest report counts)."""

    __tablename__ = "indicator_actual"
    __table_args__ = (UniqueConstraint("indicator_id", "year"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    indicator_id: Mapped[int] = mapped_column(ForeignKey("indicator.id"))
    year: Mapped[int] = mapped_column(Integer)
    value: Mapped[Decimal] = mapped_column(Numeric(14, 3))
    note: Mapped[str] = mapped_column(Text, default="")
    human_task_id: Mapped[int | None] = mapped_column(ForeignKey("human_task.id"))
    reported_at: Mapped[datetime] = mapped_column(Timestamp())


class StepTally(Base):
    """Completed steps of routed items, counted per list, unit, role and local day as they
    complete: the dashboard reads these few rows instead of every finished step."""

    __tablename__ = "step_tally"
    __table_args__ = (UniqueConstraint("plan_id", "unit_id", "role", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    role: Mapped[str] = mapped_column(String(10))
    day: Mapped[date] = mapped_column(Date)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    on_time: Mapped[int] = mapped_column(Integer, default=0)
    late: Mapped[int] = mapped_column(Integer, default=0)
    late_days: Mapped[float] = mapped_column(Float, default=0.0)
    sent_back: Mapped[int] = mapped_column(Integer, default=0)
