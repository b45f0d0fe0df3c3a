"""The office director's view (督办看板): totals and red / yellow / green by list, a table by unit
with roles counted apart, charts, the steps behind every number with the actions on them, and
the table as CSV or Excel. The office sees its jurisdictions; a unit head the same view limited
to the unit."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from markupsafe import Markup, escape
from sqlalchemy import select
from werkzeug.wrappers import Response as WerkzeugResponse

from engine.clock import local_today, parse_day, utcnow
from engine.errors import Conflict
from engine.indicators import request_report, standings
from engine.models import Indicator, Jurisdiction, Plan, PositionKind, Unit
from engine.stats import (
    ROLES,
    Counts,
    Dashboard,
    Filters,
    ScoreFormula,
    UnitRow,
    dashboard,
    drill,
    sort_units,
)

from . import form_int, get_session
from .auth import current_viewer

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
STATUSES = ("open", "overdue", "due_soon", "completed")
ROLE_LABELS = {
    "lead": _l("Lead"),
    "support": _l("Supporting"),
    "implement": _l("Implementing"),
    "office": _l("Office"),
}
# Column headers of the exports, Chinese first: the tables go to member units as they are.
EXPORT_HEADERS = (
    "单位",
    "牵头·在办",
    "配合·在办",
    "落实·在办",
    "在办",
    "即将到期",
    "已逾期",
    "退回",
    "已办结",
    "按时办结率",
    "平均逾期天数",
)


class Scope:
    """Whose figures the viewer may see, from the request's filters."""

    def __init__(self) -> None:
        viewer = current_viewer()
        session = get_session()
        self.heads = [s.unit_id for s in viewer.seats if s.kind == PositionKind.HEAD]
        offices = sorted(viewer.office_jurisdiction_ids)
        if not offices and not self.heads:
            abort(403)
        head_jurisdictions = list(
            session.scalars(select(Unit.jurisdiction_id).where(Unit.id.in_(self.heads)))
        )
        self.jurisdictions = list(
            session.scalars(
                select(Jurisdiction)
                .where(Jurisdiction.id.in_(offices + head_jurisdictions))
                .order_by(Jurisdiction.id)
            )
        )
        code = request.args.get("jurisdiction", "")
        chosen = next((j for j in self.jurisdictions if j.code == code), self.jurisdictions[0])
        self.jurisdiction = chosen
        self.is_office = chosen.id in viewer.office_jurisdiction_ids
        unit = request.args.get("unit", "")
        unit_id = form_int(unit)
        if not self.is_office:  # a unit head: their unit only
            own = [u for u in self.heads if unit_id in (None, u)]
            unit_id = own[0] if own else self.heads[0]
        status = request.args.get("status", "")
        self.filters = Filters(
            jurisdiction_ids=(chosen.id,),
            plan_key=request.args.get("plan") or None,
            unit_id=unit_id,
            status=status if status in STATUSES else None,
            since=_day("since"),
            until=_day("until"),
        )
        self.sort = request.args.get("sort", "overdue")

    def args(self, **override: Any) -> dict[str, Any]:
        f = self.filters
        values = {
            "jurisdiction": self.jurisdiction.code,
            "plan": f.plan_key or "",
            "unit": f.unit_id or "",
            "status": f.status or "",
            "since": f.since.isoformat() if f.since else "",
            "until": f.until.isoformat() if f.until else "",
        }
        values.update(override)
        return {k: v for k, v in values.items() if v not in ("", None)}


def _day(name: str) -> date | None:
    """A date filter; one typed wrongly is said so and left out, not guessed at."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_day(raw)
    except ValueError:
        flash(_("Give the date as YYYY-MM-DD."), "error")
        return None


@bp.get("")
@login_required
def index() -> str:
    scope = Scope()
    session = get_session()
    board = dashboard(session, scope.filters, utcnow())
    year = form_int(request.args.get("year", ""), 2100) or 0
    indicator_year = year if year >= 2000 else utcnow().year
    return render_template(
        "dashboard/index.html",
        scope=scope,
        board=board,
        indicator_year=indicator_year,
        indicators=standings(session, scope.jurisdiction.id, indicator_year),
        units=sort_units(board.units, scope.sort),
        plans=list(
            session.scalars(
                select(Plan).where(Plan.jurisdiction_id == scope.jurisdiction.id).order_by(Plan.id)
            )
        ),
        unit_choices=list(
            session.scalars(
                select(Unit).where(Unit.jurisdiction_id == scope.jurisdiction.id).order_by(Unit.id)
            )
        ),
        roles=ROLES,
        role_labels={k: str(v) for k, v in ROLE_LABELS.items()},
        charts=_charts(board, scope),
        rate=_rate,
        days=_days,
    )


@bp.post("/indicators/<int:indicator_id>/request")
@login_required
def request_indicator(indicator_id: int) -> WerkzeugResponse:
    """The office asks the responsible unit for an indicator's actual of a year."""
    scope = Scope()
    session = get_session()
    indicator = session.get(Indicator, indicator_id)
    if indicator is None or indicator.jurisdiction_id != scope.jurisdiction.id:
        abort(404)
    if not scope.is_office:
        abort(403)
    year_text = request.form.get("year", "")
    year = form_int(year_text, 9999) or utcnow().year
    due_text = request.form.get("due", "").strip()
    try:
        due = parse_day(due_text) if due_text else local_today(utcnow()) + timedelta(days=14)
    except ValueError:
        flash(_("Give the date as YYYY-MM-DD."), "error")
        return redirect(url_for("dashboard.index", **scope.args(year=year)) + "#indicators")
    try:
        request_report(session, indicator, year, due, utcnow())
        session.commit()
    except Conflict as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("The unit is asked to report the figure."), "info")
    return redirect(url_for("dashboard.index", **scope.args(year=year)) + "#indicators")


@bp.get("/steps")
@login_required
def steps() -> str:
    """The steps behind a number, each linking to its page (remind, decide, close there)."""
    scope = Scope()
    role = request.args.get("role")
    rows = drill(get_session(), scope.filters, utcnow(), role if role in ROLES else None)
    return render_template(
        "dashboard/steps.html",
        scope=scope,
        rows=rows,
        role=role,
        role_labels={k: str(v) for k, v in ROLE_LABELS.items()},
    )


@bp.get("/bulletin")
@login_required
def bulletin() -> str:
    """通报: progress and overdue items by unit for a period (a calendar year by default), with
    each unit's timeliness score and the formula; printable, or saved as PDF from the browser."""
    scope = Scope()
    if not scope.is_office:
        abort(403)
    today = utcnow().date()
    since = scope.filters.since or date(today.year, 1, 1)
    until = scope.filters.until or today
    filters = Filters(
        jurisdiction_ids=scope.filters.jurisdiction_ids,
        plan_key=scope.filters.plan_key,
        since=since,
        until=until,
    )
    session = get_session()
    now = utcnow()
    board = dashboard(session, filters, now)
    formula = ScoreFormula.for_jurisdiction(session, scope.jurisdiction.id)
    overdue = drill(session, Filters(**{**filters.__dict__, "status": "overdue"}), now)
    return render_template(
        "dashboard/bulletin.html",
        scope=scope,
        board=board,
        since=since,
        until=until,
        units=sort_units(board.units, "unit"),
        formula=formula,
        overdue=overdue,
        now=now,
        rate=_rate,
        days=_days,
        role_labels={k: str(v) for k, v in ROLE_LABELS.items()},
    )


def _rate(value: float | None) -> str:
    return f"{100 * value:.0f}%" if value is not None else "—"


def _days(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "—"


def _row(r: UnitRow) -> list[Any]:
    t = r.total
    return [
        r.unit,
        *(r.by_role.get(role, Counts()).open for role in ("lead", "support", "implement")),
        t.open,
        t.due_soon,
        t.overdue,
        t.sent_back,
        t.completed,
        _rate(t.on_time_rate),
        _days(t.average_days_overdue),
    ]


def _table(scope: Scope, name: str) -> tuple[str, tuple[str, ...], list[list[Any]]]:
    """One of the page's tables as (sheet title, Chinese headers, rows)."""
    session, now = get_session(), utcnow()
    if name == "units":
        board = dashboard(session, scope.filters, now)
        return "按单位统计", EXPORT_HEADERS, [_row(r) for r in sort_units(board.units, scope.sort)]
    if name == "lists":
        board = dashboard(session, scope.filters, now)
        rows = [
            [p.title, c.open, c.overdue, c.due_soon, c.completed, _rate(c.on_time_rate)]
            for p, c in board.lists
        ]
        return "按清单统计", ("清单", "在办", "已逾期", "即将到期", "已办结", "按时办结率"), rows
    if name == "steps":
        role = request.args.get("role")
        steps = drill(session, scope.filters, now, role if role in ROLES else None)
        rows = [
            [
                t.instance.business_key,
                t.name,
                t.unit.name if t.unit else "",
                str(ROLE_LABELS.get(r, r)),
                t.state.value,
                t.due_at.isoformat() if t.due_at else "",
            ]
            for t, r in steps
        ]
        return "事项明细", ("事项", "环节", "单位", "角色", "状态", "办理时限"), rows
    if name == "scores":
        today = now.date()
        filters = Filters(
            jurisdiction_ids=scope.filters.jurisdiction_ids,
            plan_key=scope.filters.plan_key,
            since=scope.filters.since or date(today.year, 1, 1),
            until=scope.filters.until or today,
        )
        board = dashboard(session, filters, now)
        formula = ScoreFormula.for_jurisdiction(session, scope.jurisdiction.id)
        rows = [
            [
                r.unit,
                r.total.open,
                r.total.overdue,
                r.total.completed,
                _rate(r.total.on_time_rate),
                _days(r.total.average_days_overdue),
                r.total.sent_back,
                formula.score(r.total) if formula.score(r.total) is not None else "",
            ]
            for r in sort_units(board.units, "unit")
        ]
        headers = ("单位", "在办", "已逾期", "已办结", "按时办结率", "平均逾期天数", "退回", "得分")
        return "考核得分", headers, rows
    if name == "indicators":
        year_text = request.args.get("year", "")
        year = form_int(year_text, 9999) or now.year
        rows = [
            [
                x.indicator.name,
                x.indicator.measure,
                year,
                float(x.target) if x.target is not None else "",
                float(x.actual) if x.actual is not None else "",
                float(x.gap) if x.gap is not None else "",
                x.indicator.unit.name,
            ]
            for x in standings(session, scope.jurisdiction.id, year)
        ]
        return (
            "指标完成情况",
            ("指标", "计量单位", "年度", "目标值", "完成值", "差距", "报送单位"),
            rows,
        )
    abort(404)


@bp.get("/export.<fmt>")
@login_required
def export(fmt: str) -> Response:
    """Any table (`table=units|lists|steps|indicators|scores`) as CSV or Excel."""
    scope = Scope()
    name = request.args.get("table", "units")
    title, headers, rows = _table(scope, name)
    stem = f"duban-{scope.jurisdiction.code}-{name}-{utcnow():%Y%m%d}"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(headers)
        writer.writerows(rows)
        # A byte-order mark so spreadsheet programs read the Chinese as UTF-8.
        body = ("\ufeff" + buf.getvalue()).encode("utf-8")
        return _download(body, "text/csv; charset=utf-8", f"{stem}.csv")
    if fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = title
        sheet.append(list(headers))
        for row in rows:
            sheet.append(row)
        out = io.BytesIO()
        book.save(out)
        mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return _download(out.getvalue(), mime, f"{stem}.xlsx")
    abort(404)


def _download(body: bytes, mime: str, name: str) -> Response:
    response = Response(body, mimetype=mime)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- charts: server-rendered SVG ---------------------------------------------------------------

COLOURS = {"red": "#c0392b", "yellow": "#d4a017", "green": "#2e8b57", "done": "#8aa"}


def _bar_chart(title: str, rows: list[tuple[str, int, str]], colour: str) -> Markup:
    """Horizontal bars, one per row (label, value, link)."""
    width, label_w, bar_h = 640, 180, 22
    top = max((v for _, v, _ in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'viewBox="0 0 {width} {bar_h * len(rows) + 30}" width="100%">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value, link) in enumerate(rows):
        y = 20 + i * bar_h
        w = (width - label_w - 60) * value / top
        parts.append(
            f'<a href="{escape(link)}"><text x="{label_w - 6}" y="{y + 15}" text-anchor="end" '
            f'font-size="12">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" '
            f'fill="{colour}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="12">{value}</text></a>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _stacked(title: str, rows: list[tuple[str, Counts]]) -> Markup:
    width, label_w, bar_h = 640, 180, 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'viewBox="0 0 {width} {bar_h * len(rows) + 30}" width="100%">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, c) in enumerate(rows):
        y, x = 20 + i * bar_h, float(label_w)
        total = (c.open + c.completed) or 1
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="12">'
            f"{escape(label)}</text>"
        )
        for key, value in (
            ("red", c.overdue),
            ("yellow", c.due_soon),
            ("green", c.green),
            ("done", c.completed),
        ):
            w = (width - label_w - 20) * value / total
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" '
                    f'fill="{COLOURS[key]}"><title>{value}</title></rect>'
                )
            x += w
    parts.append("</svg>")
    return Markup("".join(parts))


def _weeks(title: str, series: list[tuple[date, int]]) -> Markup:
    width, height = 640, 160
    top = max((v for _, v in series), default=0) or 1
    step = (width - 40) / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'viewBox="0 0 {width} {height + 30}" width="100%">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (monday, value) in enumerate(series):
        h = (height - 20) * value / top
        x = 30 + i * step
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{COLOURS["done"]}"><title>{monday}: {value}</title></rect>'
            f'<text x="{x:.1f}" y="{height + 14}" font-size="10">{monday:%m-%d}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _charts(board: Dashboard, scope: Scope) -> dict[str, Markup]:
    late = [r for r in sort_units(board.units, "overdue") if r.total.overdue][:15]
    return {
        "overdue": _bar_chart(
            _("Overdue steps by unit"),
            [
                (
                    r.unit,
                    r.total.overdue,
                    url_for("dashboard.steps", **scope.args(unit=r.unit_id, status="overdue")),
                )
                for r in late
            ],
            COLOURS["red"],
        ),
        "lists": _stacked(
            _("Where each list stands"),
            [(p.list_title or p.title[:12], c) for p, c in board.lists],
        ),
        "weeks": _weeks(_("Steps completed per week"), board.completions_by_week),
    }


def init_app(app: Any) -> None:
    app.register_blueprint(bp)
