"""A routed item as people see it: its list entry, its steps across branches, its history,
comments and attachments (evidence, 佐证材料)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import FormError
from .forms import CONTROL
from .models import Attachment, Comment, HistoryEntry, HumanTask, Instance, PlanTask

MAX_COMMENT = 4000
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# Evidence is documents and pictures; nothing a browser would run.
ALLOWED_TYPES = {
    ".pdf": "application/pdf",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".txt": "text/plain",
}
MAGIC = {
    ".pdf": (b"%PDF",),
    ".png": (b"\x89PNG",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".docx": (b"PK\x03\x04",),
    ".xlsx": (b"PK\x03\x04",),
    ".doc": (b"\xd0\xcf\x11\xe0",),
    ".xls": (b"\xd0\xcf\x11\xe0",),
}


@dataclass
class Item:
    root: Instance
    plan_task: PlanTask | None
    steps: list[HumanTask]
    history: list[HistoryEntry]
    comments: list[Comment]
    attachments: list[Attachment]


def tree_ids(root_id: int):  # type: ignore[no-untyped-def]
    return select(Instance.id).where(Instance.root_id == root_id)


def load_item(session: Session, root: Instance) -> Item:
    tree = tree_ids(root.id)
    return Item(
        root=root,
        plan_task=root.plan_task,
        steps=list(
            session.scalars(
                select(HumanTask).where(HumanTask.instance_id.in_(tree)).order_by(HumanTask.id)
            )
        ),
        history=list(
            session.scalars(
                select(HistoryEntry)
                .where(HistoryEntry.instance_id.in_(tree))
                .order_by(HistoryEntry.id)
            )
        ),
        comments=list(
            session.scalars(
                select(Comment).where(Comment.instance_id == root.id).order_by(Comment.id)
            )
        ),
        attachments=list(
            session.scalars(
                select(Attachment).where(Attachment.instance_id == root.id).order_by(Attachment.id)
            )
        ),
    )


def add_comment(
    session: Session,
    root: Instance,
    person_id: int,
    position_id: int,
    body: str,
    now: datetime,
    task: HumanTask | None = None,
) -> Comment:
    text = body.strip()
    if not text:
        raise FormError({"body": "is required"})
    if CONTROL.search(text):
        raise FormError({"body": "contains control characters"})
    if len(text) > MAX_COMMENT:
        raise FormError({"body": f"is longer than {MAX_COMMENT} characters"})
    comment = Comment(
        instance_id=root.id,
        human_task_id=task.id if task else None,
        person_id=person_id,
        position_id=position_id,
        body=text,
        at=now,
    )
    session.add(comment)
    _record(session, root, task, "commented", person_id, position_id, None, now)
    session.flush()
    return comment


def _record(
    session: Session,
    root: Instance,
    task: HumanTask | None,
    action: str,
    person_id: int,
    position_id: int,
    data: dict[str, object] | None,
    now: datetime,
) -> None:
    """The item's history gets a line for every comment and attachment too."""
    session.add(
        HistoryEntry(
            instance_id=root.id,
            human_task_id=task.id if task else None,
            action=action,
            actor_person_id=person_id,
            actor_position_id=position_id,
            data=data,
            at=now,
        )
    )


MAX_FILENAME = 200
# Control and format characters (a right-to-left override makes 'gpj.exe' read 'exe.jpg'),
# line separators, and what a header or a Windows path would read specially.
_DROPPED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_DROPPED_CHARS = set('"<>:|?*')


def safe_filename(name: str) -> str:
    """Keep the name people gave the file, minus anything a path or a header could abuse."""
    # NFKC first: a fullwidth solidus or a one-dot leader must not become a path separator
    # or '..' after the name is shown or saved by something that normalises it.
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        c
        for c in name
        if c not in _DROPPED_CHARS and unicodedata.category(c) not in _DROPPED_CATEGORIES
    ).strip(" .")
    if len(name) > MAX_FILENAME:
        # Shortened from the middle: the extension says what the file is and must survive.
        stem, dot, ext = name.rpartition(".")
        if dot and len(ext) <= 10:
            name = stem[: MAX_FILENAME - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:MAX_FILENAME].rstrip(" .")
    return name or "attachment"


class AttachmentStore:
    """Files on disk under `root`, named by content hash (written once, never overwritten)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a SHA-256")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        return digest


def check_upload(filename: str, data: bytes) -> tuple[str, str]:
    """Return (clean name, content type) or raise FormError saying what is wrong."""
    name = safe_filename(filename)
    ext = Path(name).suffix.lower()
    if ext not in ALLOWED_TYPES:
        allowed = ", ".join(sorted(ALLOWED_TYPES))
        raise FormError({"file": f"type '{ext or name}' is not allowed (allowed: {allowed})"})
    if not data:
        raise FormError({"file": "is empty"})
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise FormError(
            {"file": f"is {len(data)} bytes, over the {MAX_ATTACHMENT_BYTES // 1048576} MB limit"}
        )
    if ext in MAGIC and not data.startswith(MAGIC[ext]):
        raise FormError({"file": f"content is not a {ext} file"})
    return name, ALLOWED_TYPES[ext]


def add_attachment(
    session: Session,
    store: AttachmentStore,
    root: Instance,
    person_id: int,
    position_id: int,
    filename: str,
    stream: BinaryIO,
    now: datetime,
    task: HumanTask | None = None,
) -> Attachment:
    data = stream.read(MAX_ATTACHMENT_BYTES + 1)
    name, content_type = check_upload(filename, data)
    digest = store.put(data)
    attachment = Attachment(
        instance_id=root.id,
        human_task_id=task.id if task else None,
        filename=name,
        content_type=content_type,
        size=len(data),
        sha256=digest,
        uploaded_by_id=person_id,
        position_id=position_id,
        at=now,
    )
    session.add(attachment)
    _record(
        session,
        root,
        task,
        "attached",
        person_id,
        position_id,
        {"filename": name, "size": len(data)},
        now,
    )
    session.flush()
    return attachment
