"""SpiffWorkflow plumbing: the parser, the script engine, and a serializer that keeps the process
spec out of instance state (the spec is stored once per process version and cached here)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import zlib
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import (
    BpmnWorkflowConverter,
    WorkflowConverter,
)
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

from .timing import TIMER_FUNCTIONS

Specs = tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]

# What scripts and expressions in deployed processes may use besides the task data.
SCRIPT_GLOBALS: dict[str, Any] = {
    "date": dt.date,
    "datetime": dt.datetime,
    "timedelta": dt.timedelta,
    **TIMER_FUNCTIONS,  # escalation_at / urge_cycle: the due-date timers (engine.timing)
}

SCRIPT_ENGINE = PythonScriptEngine(environment=TaskDataEnvironment(dict(SCRIPT_GLOBALS)))


class _StateOnlyConverter(BpmnWorkflowConverter):
    """Writes a workflow without its spec; restores it onto a spec the caller already holds."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        # BpmnWorkflowConverter.to_dict less its spec and subprocess specs: converting the
        # spec (every task spec of the process) only to drop it cost a third of each dump.
        dct: dict[str, Any] = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(  # type: ignore[override]
        self,
        dct: dict[str, Any],
        spec: BpmnProcessSpec,
        subprocess_specs: dict[str, BpmnProcessSpec],
    ) -> BpmnWorkflow:
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        workflow.script_engine = SCRIPT_ENGINE
        return workflow


_config = dict(SPIFF_CONFIG)
_config[BpmnWorkflow] = _StateOnlyConverter
SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(_config))
SERIALIZER_VERSION: str = SERIALIZER.VERSION


def new_parser() -> SpiffBpmnParser:
    return SpiffBpmnParser(validator=VALIDATOR)


def specs_to_dict(spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]) -> dict:
    return {
        "spec": SERIALIZER.to_dict(spec),
        "subprocess_specs": {k: SERIALIZER.to_dict(v) for k, v in subprocess_specs.items()},
    }


def specs_from_dict(dct: dict[str, Any]) -> Specs:
    spec = SERIALIZER.from_dict(dct["spec"])
    subs = {k: SERIALIZER.from_dict(v) for k, v in dct["subprocess_specs"].items()}
    return spec, subs


def new_workflow(specs: Specs) -> BpmnWorkflow:
    return BpmnWorkflow(specs[0], specs[1], script_engine=SCRIPT_ENGINE)


def dump_state(workflow: BpmnWorkflow) -> bytes:
    """The instance's own state as compressed JSON (the spec is not in it)."""
    text = SERIALIZER.serialize_json(workflow)
    return zlib.compress(text.encode(), 6)


def load_state(blob: bytes, specs: Specs) -> BpmnWorkflow:
    dct = json.loads(zlib.decompress(blob), cls=SERIALIZER.json_decoder_cls)
    SERIALIZER.migrate(dct)
    workflow: BpmnWorkflow = SERIALIZER.from_dict(dct, spec=specs[0], subprocess_specs=specs[1])
    return workflow


class SpecCache:
    """Parsed specs per process version. Specs never change after deployment, so a cached
    spec is valid for the life of the process; restoring one costs milliseconds, a step less."""

    def __init__(self) -> None:
        self._specs: dict[int, Specs] = {}
        self._lock = threading.Lock()

    def get(self, version_id: int, load: Any) -> Specs:
        specs = self._specs.get(version_id)
        if specs is None:
            specs = specs_from_dict(load())
            with self._lock:
                self._specs[version_id] = specs
        return specs

    def clear(self) -> None:
        """Forget every spec (tests that empty the database reuse version ids)."""
        with self._lock:
            self._specs.clear()


SPEC_CACHE = SpecCache()
