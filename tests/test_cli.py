"""The CLI prints every ``SpartaError`` as one line (config errors exit 2, others 1) and lets bugs through."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from sparta_hpc import cli, errors


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    code = exit_info.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


def test_every_user_facing_error_derives_from_sparta_error() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) >= 9 and all(issubclass(c, errors.SpartaError) for c in classes)


def test_a_config_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["run", "--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and err == f"config error: config file {tmp_path / 'missing.yaml'} does not exist\n"


def test_another_sparta_error_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(["status", str(tmp_path)], capsys)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_is_not_swallowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setitem(cli.COMMANDS, "status", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["status", str(tmp_path)])
