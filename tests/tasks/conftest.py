"""Fixtures of the task tests (defined in task_fixtures.py)."""

from tests.tasks.task_fixtures import released

__all__ = ["released"]
