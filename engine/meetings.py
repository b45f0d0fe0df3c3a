"""The joint meeting (联席会议): its membership by position, meetings, minutes signed off by the
convener (processes/meeting_minutes.bpmn), and the agreed items, which are routed like the items
of a task list once the minutes are signed.

Seats belong to positions: the seed's rule is that a member is replaced by whoever takes the
post, with no new paperwork, so every step of a meeting is assigned to a position and follows
it through a hand-over."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState as SpiffState
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from .clock import LOCAL_TZ, local_today
from .errors import Conflict, FormError, NotFound, PermissionDenied
from .models import (
    AgreedItem,
    Attendance,
    Holding,
    HumanTask,
    Instance,
    InstanceStatus,
    Jurisdiction,
    JurisdictionSetting,
    Meeting,
    MeetingKind,
    MeetingParticipant,
    MeetingStatus,
    Minutes,
    MinutesStatus,
    Person,
    Plan,
    PlanTask,
    PlanTaskUnit,
    Position,
    PositionKind,
    Role,
    TaskState,
    Unit,
)
from .notify import holders_of, notify
from .routing import hand_out
from .runtime import ON_SAVE, Actor, last_completed, start_instance

PROCESS_ID = "meeting_minutes"
MEMBER_KINDS = (PositionKind.CONVENER, PositionKind.DEPUTY_CONVENER, PositionKind.MEMBER)
SEAT_KINDS = (*MEMBER_KINDS, PositionKind.OFFICE_DIRECTOR, PositionKind.LIAISON)
OFFICE_STEPS = ("draft_minutes", "finalize_minutes")
# Days the members get to review and the signer to sign; receipt within three days.
REVIEW_DAYS, SIGN_DAYS, ACK_DAYS = 5, 3, 3
YEARLY_MEETING_KEY = "yearly_meeting_by"  # MM-DD, a setting per jurisdiction
YEARLY_MEETING_DEFAULT = "12-01"
MAX_TEXT = 20_000


# --- membership --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seat:
    position: Position
    holders: tuple[Person, ...]  # on the day asked about (more than one only mid-hand-over)


def _at(day: date) -> datetime:
    """The end of a local day, in UTC: who held a seat on `day` held it then."""
    return datetime.combine(day, time(23, 59, 59), LOCAL_TZ).astimezone(UTC)


def membership(session: Session, jurisdiction: Jurisdiction, on: date) -> list[Seat]:
    """The joint meeting's seats and who held them on `on`: convener, deputy conveners, one
    member per member unit, the office director, one liaison per member unit."""
    at = _at(on)
    positions = list(
        session.scalars(
            select(Position)
            .join(Unit, Unit.id == Position.unit_id)
            .where(
                Unit.jurisdiction_id == jurisdiction.id,
                or_(
                    Position.kind.in_(MEMBER_KINDS[:2]),
                    and_(
                        Position.kind == PositionKind.OFFICE_DIRECTOR,
                        Unit.id == jurisdiction.office_unit_id,
                    ),
                    and_(
                        Position.kind.in_((PositionKind.MEMBER, PositionKind.LIAISON)),
                        Unit.member.is_(True),
                    ),
                ),
            )
            .order_by(Position.unit_id, Position.id)
        )
    )
    held: dict[int, list[Person]] = {}
    for holding in session.scalars(
        select(Holding).where(
            Holding.position_id.in_([p.id for p in positions]),
            Holding.started_at <= at,
            or_(Holding.ended_at.is_(None), Holding.ended_at > at),
        )
    ):
        held.setdefault(holding.position_id, []).append(holding.person)
    order = {k: i for i, k in enumerate(SEAT_KINDS)}
    positions.sort(key=lambda p: (order[p.kind], p.unit_id))
    return [Seat(p, tuple(held.get(p.id, []))) for p in positions]


def convener(session: Session, jurisdiction: Jurisdiction) -> Position:
    seat = session.scalar(
        select(Position)
        .join(Unit, Unit.id == Position.unit_id)
        .where(Unit.jurisdiction_id == jurisdiction.id, Position.kind == PositionKind.CONVENER)
    )
    if seat is None:
        raise NotFound(f"{jurisdiction.name} has no joint-meeting convener")
    return seat


# --- meetings ----------------------------------------------------------------------------------


@dataclass
class MeetingDraft:
    """What the office enters to call a meeting."""

    kind: MeetingKind
    title: str
    held_on: date
    place: str = ""
    agenda: str = ""
    comprehensive: bool = False
    chair_position_id: int | None = None  # None: the convener chairs
    member_position_ids: Sequence[int] = ()  # a thematic meeting's chosen members
    invited: Sequence[str] = ()  # experts and other units, by name


def _text(errors: dict[str, str], name: str, value: str, limit: int, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        errors[name] = "is required"
    elif len(value) > limit:
        errors[name] = f"is longer than {limit} characters"
    elif any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        errors[name] = "contains control characters"
    return value


def _member_seats(session: Session, jurisdiction: Jurisdiction, now: datetime) -> list[Position]:
    return [
        s.position
        for s in membership(session, jurisdiction, local_today(now))
        if s.position.kind in MEMBER_KINDS
    ]


def create_meeting(
    session: Session, jurisdiction: Jurisdiction, draft: MeetingDraft, now: datetime
) -> Meeting:
    """Call a meeting: a plenary one seats every member, a thematic one the chosen members."""
    errors: dict[str, str] = {}
    title = _text(errors, "title", draft.title, 200, required=True)
    place = _text(errors, "place", draft.place, 200)
    agenda = _text(errors, "agenda", draft.agenda, MAX_TEXT)
    seats = {p.id: p for p in _member_seats(session, jurisdiction, now)}
    chair = convener(session, jurisdiction)
    if draft.chair_position_id is not None and draft.chair_position_id != chair.id:
        delegate = seats.get(draft.chair_position_id)
        if delegate is None or delegate.kind != PositionKind.DEPUTY_CONVENER:
            errors["chair"] = "must be the convener or a deputy convener the convener delegates"
        else:
            chair = delegate
    if draft.kind == MeetingKind.PLENARY:
        chosen = list(seats.values())
    else:
        unknown = [i for i in draft.member_position_ids if i not in seats]
        if unknown:
            errors["members"] = f"positions {unknown} are not seats of this joint meeting"
        chosen = [seats[i] for i in draft.member_position_ids if i in seats]
        if chair.id not in {p.id for p in chosen}:
            chosen.insert(0, chair)
        if len(chosen) < 2:
            errors["members"] = "a thematic meeting needs at least one member besides the chair"
    invited = [_text(errors, "invited", name, 200) for name in draft.invited]
    if errors:
        raise FormError(errors)
    meeting = Meeting(
        jurisdiction_id=jurisdiction.id,
        kind=draft.kind,
        title=title,
        held_on=draft.held_on,
        place=place,
        agenda=agenda,
        comprehensive=draft.comprehensive,
        chair_position_id=chair.id,
        status=MeetingStatus.PLANNED,
        created_at=now,
    )
    meeting.participants = [
        MeetingParticipant(position_id=p.id, attendance=Attendance.EXPECTED) for p in chosen
    ] + [
        MeetingParticipant(invited=name, attendance=Attendance.EXPECTED) for name in invited if name
    ]
    session.add(meeting)
    session.flush()
    return meeting


def record_attendance(
    session: Session,
    meeting: Meeting,
    attendance: dict[int, tuple[Attendance, str]],
    revision: int | None = None,
) -> None:
    """Who came (present / a delegate sent / absent); the meeting is then held."""
    if revision is not None and revision != meeting.revision:
        raise Conflict(f"meeting {meeting.id} was changed elsewhere; reload it")
    by_id = {p.id: p for p in meeting.participants}
    errors = {
        f"participant {pid}": "is not a participant of this meeting"
        for pid in attendance
        if pid not in by_id
    }
    if errors:
        raise FormError(errors)
    for pid, (mark, delegate) in attendance.items():
        by_id[pid].attendance = mark
        by_id[pid].delegate = delegate.strip()[:100] if mark == Attendance.DELEGATE else ""
    meeting.status = MeetingStatus.HELD
    session.flush()


# --- minutes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemDraft:
    number: int
    text: str
    lead_unit_id: int
    support_unit_ids: tuple[int, ...]
    due_on: date


@dataclass
class MinutesDraft:
    number: str
    body: str
    items: list[ItemDraft] = field(default_factory=list)


def _check_minutes(
    session: Session, meeting: Meeting, draft: MinutesDraft, today: date
) -> dict[str, str]:
    errors: dict[str, str] = {}
    _text(errors, "number", draft.number, 100, required=True)
    _text(errors, "body", draft.body, MAX_TEXT, required=True)
    units = set(
        session.scalars(
            select(Unit.id).where(
                Unit.jurisdiction_id.in_(_jurisdiction_tree(session, meeting.jurisdiction_id))
            )
        )
    )
    seen: set[int] = set()
    for item in draft.items:
        where = f"item {item.number}"
        if item.number in seen or item.number < 1:
            errors[where] = "numbers must be distinct and start at 1"
        seen.add(item.number)
        if not item.text.strip():
            errors[f"{where} text"] = "is required"
        if item.lead_unit_id not in units:
            errors[f"{where} lead"] = "is not a unit of this jurisdiction"
        bad = [u for u in item.support_unit_ids if u not in units or u == item.lead_unit_id]
        if bad:
            errors[f"{where} support"] = "must be other units of this jurisdiction than the lead"
        if item.due_on < today:
            errors[f"{where} due"] = f"must not be before today ({today.isoformat()})"
    return errors


def _jurisdiction_tree(session: Session, root_id: int) -> list[int]:
    ids, frontier = [root_id], [root_id]
    while frontier:
        frontier = list(
            session.scalars(select(Jurisdiction.id).where(Jurisdiction.parent_id.in_(frontier)))
        )
        ids += frontier
    return ids


def _set_items(session: Session, minutes: Minutes, items: Iterable[ItemDraft]) -> None:
    if minutes.items:  # the old rows go first: (minutes, number) is unique
        minutes.items.clear()
        session.flush()
    minutes.items = [
        AgreedItem(
            number=i.number,
            text=i.text.strip(),
            lead_unit_id=i.lead_unit_id,
            support_unit_ids=list(dict.fromkeys(i.support_unit_ids)),
            due_on=i.due_on,
        )
        for i in sorted(items, key=lambda i: i.number)
    ]


def _reviewers(meeting: Meeting) -> list[dict[str, Any]]:
    """The attending members (present or a delegate sent; everyone expected if attendance was
    not taken), except the chair, who signs."""
    seats = [
        p.position
        for p in meeting.participants
        if p.position is not None
        and p.attendance in (Attendance.PRESENT, Attendance.DELEGATE, Attendance.EXPECTED)
        and p.position_id != meeting.chair_position_id
    ]
    return [{"unit": s.unit_id, "position": s.kind.value} for s in seats]


def start_minutes(
    session: Session, meeting: Meeting, draft: MinutesDraft, actor: Actor, now: datetime
) -> Minutes:
    """The office's first draft: the sign-off process starts at the office's drafting step."""
    if any(m.status != MinutesStatus.SUPERSEDED for m in meeting.minutes):
        raise Conflict(f"meeting {meeting.id} already has minutes; correct them instead")
    return _new_version(session, meeting, draft, actor, now, version=1, reason="")


def _new_version(
    session: Session,
    meeting: Meeting,
    draft: MinutesDraft,
    actor: Actor,
    now: datetime,
    version: int,
    reason: str,
) -> Minutes:
    today = local_today(now)
    errors = _check_minutes(session, meeting, draft, today)
    if errors:
        raise FormError(errors)
    jurisdiction = meeting.jurisdiction
    if jurisdiction.office_unit_id is None:
        raise NotFound(f"{jurisdiction.name} has no joint-meeting office")
    if meeting.status == MeetingStatus.PLANNED:
        meeting.status = MeetingStatus.HELD
    minutes = Minutes(
        meeting=meeting,
        version=version,
        number=draft.number.strip(),
        body=draft.body.strip(),
        status=MinutesStatus.DRAFT,
        correction_reason=reason,
        created_at=now,
    )
    _set_items(session, minutes, draft.items)
    session.add(minutes)
    session.flush()
    chair = meeting.chair
    member_units = session.scalars(
        select(Unit.id)
        .where(Unit.jurisdiction_id == jurisdiction.id, Unit.member.is_(True))
        .order_by(Unit.id)
    )
    data = {
        "meeting_id": meeting.id,
        "minutes_id": minutes.id,
        "office_unit": jurisdiction.office_unit_id,
        "reviewers": _reviewers(meeting),
        "signer_unit": chair.unit_id,
        "signer_position": chair.kind.value,
        "members": [{"unit": u, "role": "member"} for u in member_units],
        "review_due": (today + timedelta(days=REVIEW_DAYS)).isoformat(),
        "sign_due": (today + timedelta(days=REVIEW_DAYS + SIGN_DAYS)).isoformat(),
        "ack_due": (today + timedelta(days=REVIEW_DAYS + SIGN_DAYS + ACK_DAYS)).isoformat(),
    }
    instance = start_instance(
        session,
        PROCESS_ID,
        data,
        f"minutes-{meeting.id}-v{version}",
        now,
        actor=actor,
        jurisdiction_id=meeting.jurisdiction_id,
    )
    minutes.instance_id = instance.id
    session.flush()
    return minutes


def office_step(session: Session, minutes: Minutes) -> HumanTask | None:
    """The office's open step (drafting or revising), when the text may change."""
    if minutes.instance_id is None:
        return None
    return session.scalar(
        select(HumanTask).where(
            HumanTask.instance_id == minutes.instance_id,
            HumanTask.element_id.in_(OFFICE_STEPS),
            HumanTask.state == TaskState.READY,
        )
    )


def edit_minutes(
    session: Session, minutes: Minutes, draft: MinutesDraft, revision: int, now: datetime
) -> None:
    """The office edits the text and the agreed items, only while one of its steps is open
    (never under review or signature, never once signed)."""
    if minutes.status != MinutesStatus.DRAFT or office_step(session, minutes) is None:
        raise Conflict(
            f"minutes {minutes.number or minutes.id} can be edited only while the office drafts "
            "or revises them"
        )
    if revision != minutes.revision:
        raise Conflict("the minutes were changed elsewhere since you opened them; reload them")
    errors = _check_minutes(session, minutes.meeting, draft, local_today(now))
    if errors:
        raise FormError(errors)
    minutes.number, minutes.body = draft.number.strip(), draft.body.strip()
    _set_items(session, minutes, draft.items)
    session.flush()


def correct_minutes(
    session: Session, minutes: Minutes, reason: str, actor: Actor, now: datetime
) -> Minutes:
    """Signed minutes never change: a correction is a new version, with its reason, that goes
    through review and signature again and supersedes this one when signed."""
    if minutes.status != MinutesStatus.SIGNED:
        raise Conflict("only signed minutes are corrected; edit a draft instead")
    if any(m.version > minutes.version for m in minutes.meeting.minutes):
        raise Conflict("a correction of these minutes is already under way")
    errors: dict[str, str] = {}
    reason = _text(errors, "reason", reason, 2000, required=True)
    if errors:
        raise FormError(errors)
    draft = MinutesDraft(
        minutes.number,
        minutes.body,
        [
            ItemDraft(i.number, i.text, i.lead_unit_id, tuple(i.support_unit_ids), i.due_on)
            for i in minutes.items
            if i.due_on >= local_today(now)
        ]
        + [
            # An item already due keeps its date: its routed item is running.
            ItemDraft(i.number, i.text, i.lead_unit_id, tuple(i.support_unit_ids), local_today(now))
            for i in minutes.items
            if i.due_on < local_today(now)
        ],
    )
    return _new_version(
        session, minutes.meeting, draft, actor, now, version=minutes.version + 1, reason=reason
    )


def _signer(session: Session, minutes: Minutes) -> HumanTask | None:
    return last_completed(session, minutes.instance_id, "sign_minutes")


def _route_items(session: Session, minutes: Minutes, now: datetime) -> None:
    """The agreed items become a list of their own (one per signed version) and are handed out.
    A correction routes only the items it adds: those already routed keep running."""
    meeting = minutes.meeting
    earlier = [m for m in meeting.minutes if m.version < minutes.version and m.plan_id is not None]
    routed = {t.number for m in earlier for t in (m.plan.tasks if m.plan else [])}
    content = json.dumps(
        [[i.number, i.text, i.lead_unit_id, i.support_unit_ids] for i in minutes.items],
        ensure_ascii=False,
    )
    plan = Plan(
        key=f"meeting-{meeting.id}-v{minutes.version}",
        title=f"{meeting.title}议定事项",
        list_title="议定事项",
        document_number=minutes.number,
        issued_on=local_today(now),
        jurisdiction_id=meeting.jurisdiction_id,
        content_hash=hashlib.sha256(content.encode()).hexdigest(),
    )
    for item in minutes.items:
        units = [PlanTaskUnit(unit_id=item.lead_unit_id, role=Role.LEAD, ordinal=0)] + [
            PlanTaskUnit(unit_id=u, role=Role.SUPPORT, ordinal=n)
            for n, u in enumerate(item.support_unit_ids, 1)
        ]
        plan.tasks.append(
            PlanTask(number=item.number, text=item.text, due_on=item.due_on, units=units)
        )
    session.add(plan)
    session.flush()
    minutes.plan_id = plan.id
    new = [t.number for t in plan.tasks if t.number not in routed]
    if new:
        hand_out(session, plan.key, new, now)


def _sync_minutes(
    session: Session, instance: Instance, workflow: BpmnWorkflow, now: datetime
) -> None:
    minutes = session.scalar(select(Minutes).where(Minutes.instance_id == instance.id))
    if minutes is None:  # while start_instance is still creating it
        return
    if minutes.status == MinutesStatus.SIGNED or minutes.status == MinutesStatus.SUPERSEDED:
        return
    if workflow.data.get("signed") or _signed_in_tasks(workflow):
        signer = _signer(session, minutes)
        minutes.status = MinutesStatus.SIGNED
        minutes.signed_at = now
        if signer is not None:
            minutes.signed_by_position_id = signer.position_id
            minutes.signed_by_person_id = signer.completed_by_id
        for older in minutes.meeting.minutes:
            if older.version < minutes.version and older.status == MinutesStatus.SIGNED:
                older.status = MinutesStatus.SUPERSEDED
        session.flush()
        _route_items(session, minutes, now)
        meeting = minutes.meeting
        seats = [
            s.position.id
            for s in membership(session, meeting.jurisdiction, local_today(now))
            if s.position.kind in MEMBER_KINDS
        ]
        notify(
            session,
            holders_of(session, seats),
            "minutes_signed",
            {"meeting": meeting.title, "number": minutes.number, "version": minutes.version},
            f"/meetings/{meeting.id}/minutes/{minutes.id}/print",
            now,
        )
        return
    signing = any(
        t.task_spec.bpmn_id == "sign_minutes"
        for t in workflow.get_tasks(state=SpiffState.READY, manual=True)
    )
    minutes.status = MinutesStatus.SIGNING if signing else MinutesStatus.DRAFT


def _signed_in_tasks(workflow: BpmnWorkflow) -> bool:
    """`signed` is set by a script on the path after signature (issue runs after it)."""
    return any(
        t.data.get("signed")
        for t in workflow.get_tasks(
            state=SpiffState.READY | SpiffState.WAITING | SpiffState.STARTED
        )
    )


ON_SAVE[PROCESS_ID] = _sync_minutes


def current_minutes(meeting: Meeting) -> Minutes | None:
    """The newest version: signed or on its way to signature."""
    return meeting.minutes[-1] if meeting.minutes else None


def signed_minutes(meeting: Meeting) -> Minutes | None:
    signed = [m for m in meeting.minutes if m.status == MinutesStatus.SIGNED]
    return signed[-1] if signed else None


# --- the yearly rule and the report to the next meeting ---------------------------------------


@dataclass(frozen=True)
class YearlyRule:
    year: int
    deadline: date
    held: Meeting | None
    due: bool  # the deadline has passed without a comprehensive meeting


def yearly_meeting_deadline(session: Session, jurisdiction: Jurisdiction, year: int) -> date:
    value = (
        session.scalar(
            select(JurisdictionSetting.value).where(
                JurisdictionSetting.jurisdiction_id == jurisdiction.id,
                JurisdictionSetting.key == YEARLY_MEETING_KEY,
            )
        )
        or YEARLY_MEETING_DEFAULT
    )
    month, day = (int(x) for x in value.split("-"))
    return date(year, month, day)


def yearly_rule(session: Session, jurisdiction: Jurisdiction, today: date) -> YearlyRule:
    """At least one comprehensive coordination meeting per calendar year, held by the
    jurisdiction's deadline: is it met this year, and if not, is the deadline past?"""
    deadline = yearly_meeting_deadline(session, jurisdiction, today.year)
    held = session.scalar(
        select(Meeting)
        .where(
            Meeting.jurisdiction_id == jurisdiction.id,
            Meeting.comprehensive.is_(True),
            Meeting.status == MeetingStatus.HELD,
            Meeting.held_on >= date(today.year, 1, 1),
            Meeting.held_on <= date(today.year, 12, 31),
        )
        .order_by(Meeting.held_on)
        .limit(1)
    )
    return YearlyRule(today.year, deadline, held, held is None and today > deadline)


def set_yearly_deadline(session: Session, jurisdiction: Jurisdiction, month_day: str) -> None:
    try:
        month, day = (int(x) for x in month_day.split("-"))
        date(2024, month, day)  # a leap year admits every real MM-DD
    except ValueError:
        raise FormError({YEARLY_MEETING_KEY: f"'{month_day}' is not a date as MM-DD"}) from None
    row = session.scalar(
        select(JurisdictionSetting).where(
            JurisdictionSetting.jurisdiction_id == jurisdiction.id,
            JurisdictionSetting.key == YEARLY_MEETING_KEY,
        )
    )
    if row is None:
        session.add(
            JurisdictionSetting(
                jurisdiction_id=jurisdiction.id,
                key=YEARLY_MEETING_KEY,
                value=f"{month:02d}-{day:02d}",
            )
        )
    else:
        row.value = f"{month:02d}-{day:02d}"
    session.flush()


@dataclass(frozen=True)
class ItemProgress:
    meeting: Meeting
    minutes: Minutes
    item: PlanTask
    instance: Instance | None
    open_steps: tuple[HumanTask, ...]
    state: str  # closed | overdue | open | not_routed

    @property
    def lead(self) -> str:
        leads = self.item.units_in(Role.LEAD)
        return leads[0].name if leads else ""


def agreed_item_progress(
    session: Session, jurisdiction: Jurisdiction, today: date, meeting: Meeting | None = None
) -> list[ItemProgress]:
    """Every agreed item of the signed minutes (or of one meeting), with where it stands: the
    report the office takes to the next meeting."""
    query = (
        select(Minutes)
        .join(Meeting, Meeting.id == Minutes.meeting_id)
        .where(
            Meeting.jurisdiction_id == jurisdiction.id,
            Minutes.status == MinutesStatus.SIGNED,
            Minutes.plan_id.is_not(None),
        )
        .order_by(Meeting.held_on, Meeting.id)
    )
    if meeting is not None:
        query = query.where(Meeting.id == meeting.id)
    rows: list[ItemProgress] = []
    for minutes in session.scalars(query):
        plan_ids = [
            m.plan_id
            for m in minutes.meeting.minutes
            if m.plan_id is not None and m.version <= minutes.version
        ]
        instances = {
            number: instance
            for instance, number in session.execute(
                select(Instance, PlanTask.number)
                .join(PlanTask, PlanTask.id == Instance.plan_task_id)
                .where(PlanTask.plan_id.in_(plan_ids), Instance.parent_id.is_(None))
            ).all()
        }
        assert minutes.plan is not None
        for item in minutes.plan.tasks:
            instance = instances.get(item.number)
            steps: tuple[HumanTask, ...] = ()
            if instance is None:
                state = "not_routed"
            elif instance.status == InstanceStatus.COMPLETED:
                state = "closed"
            else:
                tree = select(Instance.id).where(Instance.root_id == instance.id)
                steps = tuple(
                    session.scalars(
                        select(HumanTask).where(
                            HumanTask.instance_id.in_(tree), HumanTask.state == TaskState.READY
                        )
                    )
                )
                late = item.due_on is not None and item.due_on < today
                state = "overdue" if late else "open"
            rows.append(ItemProgress(minutes.meeting, minutes, item, instance, steps, state))
    return rows


def visible_meetings(
    session: Session, jurisdiction_ids: Iterable[int], position_ids: Iterable[int]
) -> list[Meeting]:
    """The office sees its jurisdictions' meetings; a member the meetings they sit in."""
    seated = select(MeetingParticipant.meeting_id).where(
        MeetingParticipant.position_id.in_(list(position_ids))
    )
    return list(
        session.scalars(
            select(Meeting)
            .where(or_(Meeting.jurisdiction_id.in_(list(jurisdiction_ids)), Meeting.id.in_(seated)))
            .order_by(Meeting.held_on.desc(), Meeting.id.desc())
        )
    )


def require_office(office_jurisdiction_ids: Iterable[int], meeting: Meeting) -> None:
    if meeting.jurisdiction_id not in set(office_jurisdiction_ids):
        raise PermissionDenied("only the joint-meeting office may do this")
