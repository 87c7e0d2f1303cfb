"""The MINI reference run shared by the pipeline tests and the fault matrix, and the matrix's report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run import faults


@pytest.fixture(scope="session")
def mini_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted MINI run (inline): the records every fault case must end up with."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    faults.run_to_end(run_dir)
    return run_dir


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the fault matrix of this session and write it to ``faults.MATRIX_FILE``."""
    if not faults.MATRIX:
        return
    table = faults.render(faults.MATRIX)
    terminalreporter.section("fault matrix")
    terminalreporter.line(table)
    problem = faults.write_matrix()
    if problem is None:
        terminalreporter.line(f"written to {faults.MATRIX_FILE}")
    else:
        terminalreporter.line(f"could not write {faults.MATRIX_FILE}: {problem}", red=True)
