"""duban's engine: persisted BPMN instances, the unit directory, task lists and routing.

Knows nothing of Flask or HTTP. Every function takes a SQLAlchemy session, flushes and never
commits: the caller owns the transaction."""

from .clock import FixedClock, utcnow
from .deploy import Deployed, deploy, deploy_directory, latest_version
from .directory import find_unit, hand_over, holders, load_directory, position_of, positions_of
from .errors import (
    Conflict,
    DeployError,
    DubanError,
    FormError,
    ImportErrors,
    NotFound,
    PermissionDenied,
)
from .routing import RoutingSettings, hand_out
from .runtime import (
    Actor,
    ProcessError,
    claim_task,
    complete_task,
    history,
    may_act,
    open_tasks,
    start_instance,
)
from .tasklists import get_plan, import_plan

# Register their save hooks with the runtime (runtime.ON_SAVE) on any import.
from . import assistance, escalation, indicators, meetings  # noqa: F401  isort: skip

__all__ = [
    "Actor",
    "Conflict",
    "DeployError",
    "Deployed",
    "DubanError",
    "FixedClock",
    "FormError",
    "ImportErrors",
    "NotFound",
    "PermissionDenied",
    "ProcessError",
    "RoutingSettings",
    "claim_task",
    "complete_task",
    "deploy",
    "deploy_directory",
    "find_unit",
    "get_plan",
    "hand_out",
    "hand_over",
    "history",
    "holders",
    "import_plan",
    "latest_version",
    "load_directory",
    "may_act",
    "open_tasks",
    "position_of",
    "positions_of",
    "start_instance",
    "utcnow",
]
