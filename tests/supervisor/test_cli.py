"""`lookalike`: one command whose subcommands are the programs' own settings classes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import get_subcommand

from classifier_service.settings import ClassifierSettings
from evaluation.settings import FeedbackEvalSettings, PhotoEvalSettings, TextEvalSettings
from indexing.settings import IndexBuildSettings, RollbackSettings, VersionsSettings
from lookalike.settings import read_command_line
from supervisor.cli import Lookalike, main
from supervisor.settings import StackSettings
from supervisor.stack import internal_token_file, internal_token_for_run
from tests.support import REPO

COMMANDS = ["run", "serve", "index", "rollback", "versions", "eval", "eval-text", "eval-feedback"]


def chosen(argv: list[str]) -> Any:
    command = get_subcommand(read_command_line(Lookalike, argv, prog="lookalike"))
    return get_subcommand(command) if command.__class__.__name__ == "Serve" else command


def test_help_lists_every_subcommand() -> None:
    # A fresh interpreter, as the console script runs it: --help imports no model, no Faiss.
    shown = subprocess.run([sys.executable, "-m", "supervisor.cli", "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert all(f"    {name} " in shown.stdout for name in COMMANDS), shown.stdout
    served = subprocess.run([sys.executable, "-m", "supervisor.cli", "serve", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert all(name in served.stdout for name in ("gateway", "classifier", "similarity"))


@pytest.mark.parametrize(("argv", "settings_class"), [
    (["run"], StackSettings),
    (["serve", "classifier"], ClassifierSettings),
    (["index"], IndexBuildSettings),
    (["rollback"], RollbackSettings),
    (["versions"], VersionsSettings),
    (["eval"], PhotoEvalSettings),
    (["eval-text"], TextEvalSettings),
    (["eval-feedback"], FeedbackEvalSettings),
])
def test_each_subcommand_is_its_programs_settings_class(argv: list[str], settings_class: type) -> None:
    assert type(chosen(argv)) is settings_class


def test_a_subcommands_flag_beats_its_environment_which_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert chosen(["serve", "classifier"]).max_batch == 8
    monkeypatch.setenv("CLASSIFIER_MAX_BATCH", "4")
    monkeypatch.setenv("INDEX", "/from/env")
    served = chosen(["serve", "classifier"])
    assert (served.max_batch, served.index) == (4, Path("/from/env"))
    assert chosen(["serve", "classifier", "--max-batch", "2"]).max_batch == 2
    stack = chosen(["run", "--gateway-port", "9000", "--weights", "random"])
    assert (stack.gateway_port, stack.weights, stack.index) == (9000, "random", Path("/from/env"))


def test_evals_keep_their_flags_and_read_their_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVAL_OUT", "/reports")
    photos = chosen(["eval", "--index", "/i", "--queries", "/q", "--precisions", "fp32", "--hedge-below", "0.5,0.9"])
    assert (photos.index, photos.queries, photos.out) == (Path("/i"), Path("/q"), Path("/reports"))
    assert (photos.precisions, photos.hedge_below) == (("fp32",), (0.5, 0.9))
    assert chosen(["eval-text"]).out == Path("var/eval")  # EVAL_OUT is the photo report's alone


def test_no_command_or_a_bad_one_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["serve"]) == 2
    assert "name a service" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["serve", "classifier", "--port", "eighty"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["reindex"])
    assert exited.value.code == 2


def test_versions_runs_through_the_one_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["versions", "--index", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


def test_make_run_makes_an_internal_token_per_run_when_none_is_set(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKALIKE_INTERNAL_TOKEN", raising=False)
    first = internal_token_for_run(tmp_path / "index")
    second = internal_token_for_run(tmp_path / "index")
    assert len(first) >= 32 and first != second
    kept = internal_token_file(tmp_path / "index")
    assert kept.read_text().strip() == second and kept.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("LOOKALIKE_INTERNAL_TOKEN", "chosen-by-the-operator")
    assert internal_token_for_run(tmp_path / "index") == "chosen-by-the-operator"
