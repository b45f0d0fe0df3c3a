"""A task-division list from an Excel sheet laid out like the seeds' tables: a header row with
序号, 工作任务 and 责任单位, then one row per task. The 责任单位 cell is written as the documents
write it — "县卫生健康局、县财政局牵头;县司法局配合;各乡(镇)党委、政府落实" — and is split into
lead, supporting and implementing units. The result goes through the same validation and the
same all-or-nothing import as a data file (engine.tasklists)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from .errors import ImportErrors
from .tasklists import ImportResult, import_document

HEADERS = {"序号": "number", "工作任务": "text", "责任单位": "units"}
# Longest first: 配合落实 is implementing, not supporting.
ROLE_SUFFIXES = (
    ("配合落实", "implement"),
    ("牵头", "lead"),
    ("负责", "lead"),
    ("配合", "support"),
    ("落实", "implement"),
)
SEGMENTS = re.compile(r"[;；。\n]+")
MAX_ROWS = 5000


def _clean(value: Any) -> str:
    return re.sub(r"\s+", "", str(value)) if value is not None else ""


def parse_responsibility(cell: str) -> tuple[dict[str, list[str]], list[str]]:
    """Units by role from a 责任单位 cell, and what could not be read."""
    roles: dict[str, list[str]] = {"lead": [], "support": [], "implement": []}
    problems: list[str] = []
    for segment in filter(None, SEGMENTS.split(_clean(cell).replace(",", ";").replace("，", ";"))):
        role = next(
            ((r, segment[: -len(sfx)]) for sfx, r in ROLE_SUFFIXES if segment.endswith(sfx)), None
        )
        if role is None:
            problems.append(f"'{segment}' ends with none of 牵头, 配合, 落实")
            continue
        name, names = role[1], []
        parts = [p for p in name.split("、") if p]
        while parts:
            part = parts.pop(0)
            if part.startswith("各"):  # "各乡(镇)党委、政府": one collective name
                names.append("、".join([part, *parts]))
                break
            names.append(part)
        if not names:
            problems.append(f"'{segment}' names no unit")
        roles[role[0]] += names
    return roles, problems


def read_workbook(
    path: Path, plan: dict[str, Any], progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """The sheet as a list document (the shape of data/tasklists/*.toml); problems with the
    sheet itself (no header, an unreadable cell) are raised together, naming sheet and row."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # a corrupt or non-Excel file: say so, name the file
        raise ImportErrors(str(path), [f"not an Excel workbook (.xlsx): {exc}"]) from None
    sheet = book.active
    if sheet is None:
        raise ImportErrors(str(path), ["the workbook has no sheet"])
    rows = list(sheet.iter_rows(values_only=True))[: MAX_ROWS + 20]
    header_at, columns = None, {}
    for i, row in enumerate(rows[:20]):
        cells = {_clean(v): j for j, v in enumerate(row)}
        if all(h in cells for h in HEADERS):
            header_at, columns = i, {HEADERS[h]: cells[h] for h in HEADERS}
            break
    if header_at is None:
        raise ImportErrors(
            str(path), [f"sheet '{sheet.title}': no header row with 序号, 工作任务, 责任单位"]
        )
    problems: list[str] = []
    tasks = []
    body = rows[header_at + 1 :]
    for i, row in enumerate(body, header_at + 2):
        if progress is not None:
            progress(i - header_at - 1, len(body))
        number, text, cell = (
            row[columns[k]] if columns[k] < len(row) else None for k in ("number", "text", "units")
        )
        if number is None and not text and not cell:
            continue  # a blank line
        where = f"sheet '{sheet.title}' row {i}"
        try:
            number = int(str(number).strip())
        except ValueError:
            problems.append(f"{where}: 序号 '{number}' is not a number")
            continue
        roles, unreadable = parse_responsibility(str(cell or ""))
        problems += [f"{where} (task {number}): 责任单位 {p}" for p in unreadable]
        tasks.append({"number": number, "text": str(text or "").strip(), **roles})
    if problems:
        raise ImportErrors(str(path), problems)
    return {"plan": plan, "tasks": tasks}


def import_workbook(
    session: Session,
    path: Path,
    key: str,
    title: str,
    jurisdiction: str,
    document_number: str = "",
    issued_on: date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    plan: dict[str, Any] = {"key": key, "title": title, "jurisdiction": jurisdiction}
    if document_number:
        plan["document_number"] = document_number
    if issued_on is not None:
        plan["issued_on"] = issued_on
    return import_document(session, read_workbook(path, plan, progress), str(path))
