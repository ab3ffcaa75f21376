"""One settings class gives a program its flags and environment variables: a flag beats the variable, then the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier_service.settings import ClassifierSettings
from gateway.settings import GatewaySettings
from indexing.settings import IndexBuildSettings, RollbackSettings
from lookalike.settings import read_command_line


def test_a_flag_beats_the_environment_which_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_command_line(ClassifierSettings, [], prog="t").port == 8001
    monkeypatch.setenv("CLASSIFIER_PORT", "9001")
    assert read_command_line(ClassifierSettings, [], prog="t").port == 9001
    assert read_command_line(ClassifierSettings, ["--port", "9002"], prog="t").port == 9002


def test_a_program_specific_variable_beats_the_shared_one_and_a_flag_beats_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEX", "/shared")
    assert read_command_line(ClassifierSettings, [], prog="t").index == Path("/shared")
    monkeypatch.setenv("CLASSIFIER_INDEX", "/own")
    assert read_command_line(ClassifierSettings, [], prog="t").index == Path("/own")
    assert read_command_line(ClassifierSettings, ["--index", "/flag"], prog="t").index == Path("/flag")


def test_the_indexing_jobs_flags_keep_their_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Makefile, compose.yaml and the Kubernetes job pass."""
    monkeypatch.setenv("WEIGHTS", "random")
    settings = read_command_line(IndexBuildSettings, [
        "--catalog", "/data/catalog", "--index", "/data/index", "--precision", "fp32", "--keep", "5",
        "--index-type", "HNSW32", "--batch-size", "4", "--notify", "http://classifier:8000", "http://similarity:8000"],
        prog="t")
    assert (settings.catalog, settings.index, settings.weights, settings.precision) == (
        Path("/data/catalog"), Path("/data/index"), "random", "fp32")
    assert (settings.keep, settings.index_type, settings.batch_size) == (5, "HNSW32", 4)
    assert settings.notify == ["http://classifier:8000", "http://similarity:8000"]
    rollback = read_command_line(RollbackSettings, ["--index", "var/index", "--to", "v1", "--notify", "http://a", "http://b"],
                                 prog="t")
    assert (rollback.to, rollback.notify) == ("v1", ["http://a", "http://b"])


def test_a_list_is_comma_separated_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY", "http://a:8001, http://b:8002")
    assert read_command_line(IndexBuildSettings, [], prog="t").notify == ["http://a:8001", "http://b:8002"]
    monkeypatch.setenv("GATEWAY_ALLOWED_ORIGINS", "https://shop.example,https://www.shop.example")
    assert read_command_line(GatewaySettings, [], prog="t").allowed_origins == [
        "https://shop.example", "https://www.shop.example"]


def test_a_nested_limit_takes_its_flag_and_keeps_the_others_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINGER_S", "7")
    limits = read_command_line(GatewaySettings, ["--upload-limits.upload-idle-s", "3"], prog="t").upload_limits
    assert (limits.upload_idle_s, limits.linger_s, limits.upload_timeout_s) == (3, 7, 30)


@pytest.mark.parametrize(("argv", "env", "named"), [
    (["--port", "eighty"], {}, "--port"),
    (["--precision", "fp16"], {}, "--classifier-precision"),
    ([], {"CLASSIFIER_MAX_BATCH": "0"}, "--max-batch"),
    (["--no-such-flag"], {}, "--no-such-flag"),
])
def test_a_bad_value_is_a_clear_error_with_status_2(argv: list[str], env: dict[str, str], named: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        read_command_line(ClassifierSettings, argv, prog="python -m classifier_service")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m classifier_service") and named in err and "Traceback" not in err


def test_help_names_each_flags_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        read_command_line(IndexBuildSettings, ["--help"], prog="python -m indexing")
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--batch-size int Photos embedded per forward pass. (default: 16) [env: BATCH_SIZE]" in out
    assert "[env: INT8_MIN_COSINE]" in out and "{auto,fp32,bf16,int8}" in out
