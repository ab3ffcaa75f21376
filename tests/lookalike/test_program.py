"""A program: its settings from the command line, the environment and the defaults; a JobError is exit status 2."""

from __future__ import annotations

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike.errors import EmptyCatalog
from lookalike.program import Program


class GreetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GREET_")

    name: str = Field("world", description="Whom to greet.")


def greet(settings: GreetSettings) -> int:
    if settings.name == "nobody":
        raise EmptyCatalog("Nobody is there to greet: pass --name.")
    print(f"hello, {settings.name}")
    return 0


PROGRAM = Program(GreetSettings, greet, prog="python -m greet")


def test_main_reads_the_flags_before_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GREET_NAME", "store")
    assert PROGRAM.main([]) == 0 and capsys.readouterr().out == "hello, store\n"
    assert PROGRAM.main(["--name", "shopper"]) == 0 and capsys.readouterr().out == "hello, shopper\n"


def test_a_job_error_ends_it_with_its_message_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert PROGRAM.execute(GreetSettings(name="nobody")) == 2
    assert capsys.readouterr().err == "error: Nobody is there to greet: pass --name.\n"


def test_a_bad_flag_is_the_usage_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        PROGRAM.main(["--colour", "red"])
    assert stopped.value.code == 2 and "usage: python -m greet" in capsys.readouterr().err
