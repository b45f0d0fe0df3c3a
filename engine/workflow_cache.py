"""Workflows kept in memory between steps, so a step need not rebuild its instance from the
stored state that this process itself wrote a moment ago.

An entry is the live workflow as it was when its state was saved, with the bytes saved and the
spec it runs on. A step may use it only if the row it has just locked holds exactly those bytes
on that spec: the lock makes the row current, and equal bytes on an equal spec deserialize to
an equal workflow, whatever other process or database wrote the row. A step takes its entry out
(one user at a time) and hands the workflow back only when its transaction commits; a rolled-back
step's workflow, changed in memory by a run that never happened, is dropped."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow


@dataclass(frozen=True)
class Saved:
    workflow: BpmnWorkflow
    state: bytes
    specs: Any  # the Specs object the workflow runs on (compared by identity)


class WorkflowCache:
    """Least recently saved workflows per instance id, at most `size` of them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[int, Saved] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, instance_id: int, state: bytes, specs: Any) -> BpmnWorkflow | None:
        """The workflow saved as `state` on `specs`, removed from the cache; else None."""
        with self._lock:
            saved = self._entries.pop(instance_id, None)
        if saved is None or saved.specs is not specs or saved.state != state:
            return None
        return saved.workflow

    def put(self, instance_id: int, saved: Saved) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[instance_id] = saved
            self._entries.move_to_end(instance_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


# A live workflow of the routing process takes ~16 KB (tracemalloc, mid-item): 4,096 of them,
# more than the running instances of both seed lists together, are ~65 MB a worker.
# DUBAN_WORKFLOW_CACHE sets the number (0 keeps none).
WORKFLOWS = WorkflowCache(size=int(os.environ.get("DUBAN_WORKFLOW_CACHE", "4096")))
