"""The API's OpenAPI 3.0.3 description, written by hand (served at /api/v1/openapi.json).
Response objects have fixed members (additionalProperties: false), so a change in what the
API returns shows up in tests/web/test_api_schema.py; form data stays an open object."""

from __future__ import annotations

from typing import Any

from engine.access import Urgency
from engine.forms import FORMS
from engine.items import ALLOWED_TYPES, MAX_ATTACHMENT_BYTES, MAX_COMMENT
from engine.models import InstanceStatus, PositionKind, Role, TaskState, UnitKind

Schema = dict[str, Any]
PREFIX = "/api/v1"
MAX_ID = 2**31 - 1
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
DATE: Schema = {"type": "string", "format": "date"}
INT: Schema = {"type": "integer"}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
OPEN_OBJECT: Schema = {"type": "object", "additionalProperties": True}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"nullable": True, "allOf": [schema]}
    return {**schema, "nullable": True}


def obj(properties: dict[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def enum(values: Any) -> Schema:
    return {"type": "string", "enum": [v.value if hasattr(v, "value") else v for v in values]}


def _references() -> dict[str, Schema]:
    return {
        "Error": obj(
            {
                "error": {"type": "string", "description": "what is wrong, for a person"},
                "errors": {
                    "type": "object",
                    "description": "field name → what is wrong with it",
                    "additionalProperties": STR,
                },
            },
            optional=("errors",),
        ),
        "UnitRef": obj({"id": INT, "name": STR}),
        "PersonRef": obj({"id": INT, "name": STR}),
        "PositionRef": obj(
            {"id": INT, "kind": enum(PositionKind), "title": STR, "unit": ref("UnitRef")}
        ),
        "ItemRef": obj(
            {
                "id": {**INT, "description": "the item (top-level instance): GET /items/{id}"},
                "business_key": {**STR, "example": "weixi-2023-15#7"},
                "plan": nullable(STR),
                "number": nullable(INT),
                "excerpt": nullable({**STR, "description": "the plan task's text, shortened"}),
            }
        ),
    }


def _steps() -> dict[str, Schema]:
    return {
        "Step": obj(
            {
                "id": INT,
                "name": STR,
                "element": {**STR, "description": "the BPMN element id"},
                "form": enum(FORMS),
                "state": enum(TaskState),
                "unit": ref("UnitRef"),
                "position": obj({"id": INT, "kind": enum(PositionKind), "title": STR}),
                "due_at": nullable({**DATE_TIME, "description": "UTC"}),
                "due_date": nullable({**DATE, "description": "the due day, Asia/Shanghai"}),
                "urgency": nullable(
                    {**enum(Urgency), "description": "open steps: overdue, due in 3 days, or not"}
                ),
                "created_at": DATE_TIME,
                "completed_at": nullable(DATE_TIME),
                "item": ref("ItemRef"),
            }
        ),
        "Field": obj(
            {
                "name": STR,
                "label": STR,
                "kind": enum(("text", "date", "bool", "choice")),
                "required": BOOL,
                "required_when": nullable(obj({"field": STR, "value": {}})),
                "choices": array(STR),
                "default": {"description": "the value taken when the field is left out"},
                "max_length": nullable(INT),
                "not_before_today": BOOL,
            }
        ),
        "Form": obj({"name": STR, "title": STR, "fields": array(ref("Field"))}),
        "TaskDetail": obj(
            {
                "step": ref("Step"),
                "can_act": {**BOOL, "description": "whether the caller may complete it now"},
                "form": ref("Form"),
                "form_data": nullable({**OPEN_OBJECT, "description": "what was submitted"}),
            }
        ),
        "Inbox": obj(
            {
                "steps": array(ref("Step")),
                "total": INT,
                "page": INT,
                "pages": INT,
                "per_page": INT,
            }
        ),
        "StepList": obj({"steps": array(ref("Step"))}),
    }


def _items() -> dict[str, Schema]:
    units = obj({role.value: array(ref("UnitRef")) for role in Role})
    return {
        "HistoryEntry": obj(
            {
                "id": INT,
                "at": DATE_TIME,
                "action": STR,
                "step_id": nullable(INT),
                "actor": obj(
                    {
                        "person": nullable(ref("PersonRef")),
                        "position": nullable(ref("PositionRef")),
                        "label": STR,
                    }
                ),
                "data": nullable(OPEN_OBJECT),
            }
        ),
        "Comment": obj(
            {
                "id": INT,
                "at": DATE_TIME,
                "step_id": nullable(INT),
                "body": STR,
                "person": nullable(ref("PersonRef")),
                "position": nullable(ref("PositionRef")),
            }
        ),
        "Attachment": obj(
            {
                "id": INT,
                "at": DATE_TIME,
                "step_id": nullable(INT),
                "filename": STR,
                "content_type": enum(sorted(set(ALLOWED_TYPES.values()))),
                "size": INT,
                "sha256": {**STR, "pattern": "^[0-9a-f]{64}$"},
                "uploaded_by": nullable(ref("PersonRef")),
                "position": nullable(ref("PositionRef")),
                "download_url": STR,
            }
        ),
        "PlanTask": obj(
            {
                "plan": obj({"key": STR, "title": STR, "document_number": STR}),
                "number": INT,
                "text": STR,
                "units": units,
            }
        ),
        "Item": obj(
            {
                "id": INT,
                "business_key": STR,
                "process_id": STR,
                "status": enum(InstanceStatus),
                "created_at": DATE_TIME,
                "completed_at": nullable(DATE_TIME),
                "plan_task": nullable(ref("PlanTask")),
                "steps": array(ref("Step")),
                "history": array(ref("HistoryEntry")),
                "comments": array(ref("Comment")),
                "attachments": array(ref("Attachment")),
            }
        ),
    }


def _others() -> dict[str, Schema]:
    jurisdiction = obj({"code": STR, "name": STR})
    unit = obj({"id": INT, "name": STR, "kind": enum(UnitKind), "jurisdiction": jurisdiction})
    return {
        "Plan": obj(
            {
                "key": STR,
                "title": STR,
                "list_title": STR,
                "document_number": STR,
                "issued_on": nullable(DATE),
                "jurisdiction": jurisdiction,
                "task_count": INT,
            }
        ),
        "PlanList": obj({"plans": array(ref("Plan"))}),
        "Me": obj(
            {
                "account": obj({"id": INT, "login": STR, "locale": STR}),
                "person": obj({"id": INT, "name": STR, "title": STR}),
                "is_admin": BOOL,
                "positions": array(
                    obj({"id": INT, "kind": enum(PositionKind), "title": STR, "unit": unit})
                ),
                "office_jurisdictions": array(jurisdiction),
            }
        ),
        "CompleteRequest": obj(
            {
                "data": {
                    **OPEN_OBJECT,
                    "description": "the form's fields by name (see GET /tasks/{id}: form); "
                    "dates as YYYY-MM-DD, bool fields as true/false",
                    "example": {"note": "收到"},
                }
            }
        ),
        "CommentRequest": obj({"body": {**STR, "minLength": 1, "maxLength": MAX_COMMENT}}),
        "AttachmentUpload": obj({"file": {**STR, "format": "binary"}}),
    }


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS: dict[str, str] = {
    "400": "The request is malformed, or the form or file was refused (see errors)",
    "401": "No token, or an unknown, revoked or disabled one",
    "403": "The step is visible to the caller, but none of their positions may do this",
    "404": "No such resource, or one the caller may not see",
    "409": "The step is no longer open (someone completed it first); nothing was changed",
    "410": "The attachment's file is no longer stored",
    "413": "The request body is over the size limit",
    "415": "The body is not of the expected media type",
}


def _responses(ok: str, schema: Schema, *codes: str, status: str = "200") -> Schema:
    responses = {status: _json(ok, schema)}
    for code in ("401", *codes):
        responses[code] = _json(ERRORS[code], ref("Error"))
    responses["401"]["headers"] = {
        "WWW-Authenticate": {"schema": STR, "description": 'Bearer realm="duban", error=...'}
    }
    return responses


def _id(name: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": what,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _inbox_parameters() -> list[Schema]:
    return [
        _query("plan", {**STR, "maxLength": 64}, "only this plan's items (a plan key)"),
        _query("urgency", enum(Urgency), "red: overdue; yellow: due within 3 days; green"),
        _query("within", {**INT, "minimum": 0, "maximum": 9999}, "due within N days"),
        _query(
            "scope",
            {**enum(("mine", "unit", "all")), "default": "mine"},
            "mine: steps you may act on; unit: also your unit's (heads); "
            "all: every open step of your office's jurisdiction",
        ),
        _query("page", {**INT, "minimum": 1, "maximum": 10_000, "default": 1}, "50 a page"),
    ]


def _reading_paths() -> dict[str, Schema]:
    task_id = _id("task_id", "a step (human task)")
    return {
        "/me": {
            "get": {
                "operationId": "getMe",
                "summary": "The caller: person, positions held now, administrator or not",
                "responses": _responses("The caller", ref("Me")),
            }
        },
        "/inbox": {
            "get": {
                "operationId": "listInbox",
                "summary": "Open steps (待办), most urgent first",
                "parameters": _inbox_parameters(),
                "responses": _responses("A page of open steps", ref("Inbox"), "400"),
            }
        },
        "/done": {
            "get": {
                "operationId": "listDone",
                "summary": "Steps the caller's units completed (已办), newest first (100)",
                "responses": _responses("Completed steps", ref("StepList")),
            }
        },
        "/tasks/{task_id}": {
            "get": {
                "operationId": "getTask",
                "summary": "A step, its form's fields and whether the caller may act on it",
                "parameters": [
                    task_id,
                    _query("lang", enum(("zh_CN", "en")), "language of labels"),
                ],
                "responses": _responses("The step", ref("TaskDetail"), "404"),
            }
        },
        "/items/{root_id}": {
            "get": {
                "operationId": "getItem",
                "summary": "A routed item: task text, units, steps, history, comments, files",
                "parameters": [_id("root_id", "an item (step.item.id)")],
                "responses": _responses("The item", ref("Item"), "404"),
            }
        },
        "/plans": {
            "get": {
                "operationId": "listPlans",
                "summary": "The task-division lists",
                "responses": _responses("Every plan", ref("PlanList")),
            }
        },
    }


def _body(schema: Schema, media_type: str = "application/json") -> Schema:
    return {"required": True, "content": {media_type: {"schema": schema}}}


def _writing_paths() -> dict[str, Schema]:
    task_id = _id("task_id", "a step (human task)")
    files = {media: {"schema": {**STR, "format": "binary"}} for media in ALLOWED_TYPES.values()}
    return {
        "/tasks/{task_id}/complete": {
            "post": {
                "operationId": "completeTask",
                "summary": "Complete a step with its form's data (one transaction)",
                "parameters": [task_id],
                "requestBody": _body(ref("CompleteRequest")),
                "responses": _responses(
                    "Completed: the step as it is now",
                    ref("TaskDetail"),
                    *("400", "403", "404", "409", "413", "415"),
                ),
            }
        },
        "/tasks/{task_id}/comments": {
            "post": {
                "operationId": "addComment",
                "summary": "Comment on a step's item",
                "parameters": [task_id],
                "requestBody": _body(ref("CommentRequest")),
                "responses": _responses(
                    "The comment",
                    ref("Comment"),
                    *("400", "403", "404", "413", "415"),
                    status="201",
                ),
            }
        },
        "/tasks/{task_id}/attachments": {
            "post": {
                "operationId": "addAttachment",
                "summary": "Add evidence to an open step the caller may complete",
                "description": f"Allowed: {', '.join(sorted(ALLOWED_TYPES))}; at most "
                f"{MAX_ATTACHMENT_BYTES // 1048576} MB.",
                "parameters": [task_id],
                "requestBody": _body(ref("AttachmentUpload"), "multipart/form-data"),
                "responses": _responses(
                    "The stored attachment",
                    ref("Attachment"),
                    *("400", "403", "404", "409", "413", "415"),
                    status="201",
                ),
            }
        },
        "/attachments/{attachment_id}": {
            "get": {
                "operationId": "downloadAttachment",
                "summary": "An attachment's file, for those who may see its item",
                "parameters": [_id("attachment_id", "an attachment")],
                "responses": {
                    **_responses("", STR, "404", "410"),
                    "200": {"description": "The file", "content": files},
                },
            }
        },
    }


def document() -> Schema:
    paths = {**_reading_paths(), **_writing_paths()}
    schemas = {**_references(), **_steps(), **_items(), **_others()}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "duban API",
            "version": "1",
            "description": "督办: steps, items and evidence for other programs. Send "
            "'Authorization: Bearer <token>'; rights are those of the token's person, as on "
            "the web pages. Times are UTC (ISO 8601); due dates are also given as the local day.",
        },
        "paths": {
            f"{PREFIX}/openapi.json": {
                "get": {
                    "operationId": "getOpenapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json("The OpenAPI document", OPEN_OBJECT)},
                }
            },
            **{PREFIX + path: item for path, item in paths.items()},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }
