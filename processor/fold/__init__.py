"""Pure fold logic: state + event -> new state and outcome. Nothing here touches Kafka."""

from processor.fold.outcome import Outcome, Transition
from processor.fold.execution import ExecutionFolder, StateChange, StateStore, InMemoryStateStore

__all__ = [
    "Outcome",
    "Transition",
    "ExecutionFolder",
    "StateChange",
    "StateStore",
    "InMemoryStateStore",
]
