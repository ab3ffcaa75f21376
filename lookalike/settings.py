"""Defaults that more than one program shares, and the settings every program reads the same way.

Each program has its own settings object (`ClassifierSettings`, `GatewaySettings`, ...); the
values they have in common are defined here once, so a service and the indexing job can't
disagree about where the index lives or how many pixels a photo may have.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, CliApp, CliSettingsSource, NoDecode, SettingsConfigDict, SettingsError

from lookalike.contracts import PrecisionSetting

INDEX_ROOT = Path("var/index")
"""Where `make index` publishes and the services read, unless INDEX says otherwise."""

MAX_PIXELS = 60_000_000
"""Largest photo decoded: a 48 MP phone photo fits, a decompression bomb does not."""

MAX_UPLOAD_BYTES = 20_000_000
"""Largest upload accepted by the gateway and the classifier."""

MODEL_WEIGHTS = "auto"
"""`imagenet`, `random`, `auto` (ImageNet where it can be loaded, else random) or a .pth path."""

PRECISION: PrecisionSetting = "auto"


def split_commas(value: object) -> object:
    """`a, b` as ["a", "b"]: how a list is given in one environment variable."""
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]
"""A list given as `a,b` in the environment, and as `--flag a b`, `--flag a,b` or `--flag a --flag b`."""

S = TypeVar("S", bound=BaseSettings)


def environment_names(field_name: str, field: FieldInfo, env_prefix: str) -> tuple[str, ...]:
    """The variables a settings field is read from, first one first: its aliases, else prefix + name."""
    alias = field.validation_alias
    names = ([c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices)
             else [alias] if isinstance(alias, str) else [env_prefix + field_name])
    return tuple(name.upper() for name in names)


class _CommandLineSource(CliSettingsSource[Any]):
    """pydantic-settings' command line, with `--help` naming each field's own environment variables.

    Its own rule names a subcommand's variables after the parent's, and so names none here, but every
    subcommand here is a program's settings class that reads its own (BATCH_SIZE). Overrides a private
    hook of pydantic-settings 2.16; tests/lookalike/test_command_line.py checks the help text it gives.
    """

    def _get_field_env_var_names(self, field_name: str, field_info: FieldInfo, env_prefixes: tuple[tuple[str, bool], ...],
                                 model_config: Mapping[str, Any]) -> tuple[str, ...]:
        return environment_names(field_name, field_info, str(model_config.get("env_prefix", "")))


def command_line(settings_class: type[BaseSettings], prog: str) -> CliSettingsSource[Any]:
    """The command line a settings class gives, not yet parsed: its parser names every flag."""
    return _CommandLineSource(
        settings_class, cli_prog_name=prog, cli_kebab_case=True, cli_implicit_flags=True, cli_hide_none_type=True,
        cli_avoid_json=True, cli_show_env_vars=True, case_sensitive=False)


def read_command_line(settings_class: type[S], argv: Sequence[str] | None, prog: str) -> S:
    """A program's settings from its flags, else the environment, else the defaults: one class gives all three.

    Flags are the fields' names in kebab case (`--batch-size`; an alias such as INDEX gives `--index`), and
    `--help` shows each field's description with its default and environment variable. A value that does
    not validate, from a flag or the environment, ends the program with its usage and exit status 2, as
    argparse does for a flag it does not know.
    """
    source = command_line(settings_class, prog)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return CliApp.run(settings_class, cli_args=args, cli_settings_source=source)
    except ValidationError as exc:
        problems = "; ".join(f"--{str(e['loc'][-1]).lower().replace('_', '-')}: {e['msg']} (got {e['input']!r})"
                             for e in exc.errors())
        source.root_parser.error(f"{problems}; from the flag, else its environment variable (see --help)")
    except SettingsError as exc:
        source.root_parser.error(str(exc))
    raise AssertionError("argparse's error() exits")

TEXT_MODEL = "auto"
TEXT_MODEL_DOC = (
    "The sentence model that ranks words by meaning beside bm25: `auto` (the packaged all-MiniLM-L6-v2 when "
    "installed, else sentence-transformers/all-MiniLM-L6-v2 from the model hub where reachable, else `none` with "
    "a warning), a model hub name, a local directory holding a sentence-transformers model, or `none` (bm25 alone).")


class ServiceSettings(BaseSettings):
    """Where a service listens: each service's settings add their own port's default, and the rest."""

    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 for every interface.")
    port: int = Field(description="Port to listen on.")


class LoggingSettings(BaseSettings):
    """LOG_LEVEL and LOG_FORMAT (`json`, or `text` for a person at a terminal), for every program."""

    model_config = SettingsConfigDict(env_prefix="LOG_", extra="ignore", env_ignore_empty=True)

    level: str = Field("INFO", description="Least severe log level written: DEBUG, INFO, WARNING or ERROR.")
    format: Literal["json", "text"] = Field("json", description=(
        "`json`: one JSON object per log line, searchable by request id; `text` for reading at a terminal."))

    @field_validator("format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class ModelSettings(BaseSettings):
    """WEIGHTS and PRECISION, for the programs that embed photos themselves (indexing, eval, bench)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    weights: str = Field(MODEL_WEIGHTS, description=(
        "The network's weights: `imagenet` (downloaded once into $TORCH_HOME), `random` (seeded; results mean "
        "nothing, for tests and demos), `auto` (imagenet where it loads, else random with a loud warning) "
        "or the path of a .pth state dict."))
    precision: PrecisionSetting = Field(PRECISION, description=(
        "`fp32`, `int8` or `auto`: int8 where the index version's int8 gate passed, else fp32 (ONNX Runtime "
        "runs the version's graphs; `bf16`, the torch graph's, runs fp32 and says so). `int8` quantises on the "
        "catalogue and serves it even if its gate failed, with a loud warning."))

# What one service lets a client hold: connections, header time, upload bytes and upload time.
# Read without a service's prefix: each service runs in its own process (and container), so
# `MAX_INFLIGHT_UPLOAD_BYTES=...` is set per service. The connection limits start with `HTTP_`.
# The defaults are sized for the 24 GB, 2-core machine the README describes.


class ConnectionLimits(BaseSettings):
    """What uvicorn enforces for every connection, before a request reaches the app."""

    model_config = SettingsConfigDict(env_prefix="HTTP_", extra="ignore", env_ignore_empty=True)

    max_connections: int = Field(1024, ge=1, description=(
        "Connections at once; a request arriving beyond them gets 503 (uvicorn's limit_concurrency)."))
    keep_alive_s: int = Field(5, ge=1, description="An idle keep-alive connection is closed after this.")
    header_timeout_s: float = Field(10.0, gt=0, description=(
        "A connection whose request line and headers have not all arrived within this is closed."))
    max_header_bytes: int = Field(64 * 1024, ge=1024, description=(
        "A request line plus headers longer than this gets 431 and the connection is closed."))


class UploadLimits(BaseSettings):
    """What the upload guard enforces for request bodies, in the gateway and the classifier."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    max_inflight_upload_bytes: int = Field(256_000_000, ge=1, description=(
        "Upload bytes being read or held at once. A request that would pass it waits up to "
        "UPLOAD_BUDGET_WAIT_S, then gets 503 `busy` with Retry-After before its body is read."))
    upload_budget_wait_s: float = Field(2.0, ge=0, description=(
        "How long a request waits for room in MAX_INFLIGHT_UPLOAD_BYTES before it gets 503 `busy`."))
    upload_timeout_s: float = Field(30.0, gt=0, description="A body not finished within this gets 408.")
    upload_idle_s: float = Field(10.0, gt=0, description="A body that sends nothing for this long gets 408.")
    linger_s: float = Field(30.0, ge=0, description=(
        "After an early refusal (413, 415, 400, 503 before the body), read and discard the rest of the body "
        "for up to this long after the answer (or until it stalls for UPLOAD_IDLE_S), so that clients "
        "which send it all before reading see the answer."))
    linger_bytes: int = Field(64_000_000, ge=0, description="... and for up to this many bytes.")


class VectorStoreSettings(BaseSettings):
    """Where index versions keep their vectors: read by the indexing job and the similarity service alike."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    vector_store: Literal["faiss", "milvus"] = Field("faiss", description=(
        "`faiss`: one Faiss file per category inside the version, searched in the similarity service's own "
        "memory (nothing to run beside it). `milvus`: the vectors in a Milvus server's collection, for a "
        "catalogue that outgrows one machine."))
    milvus_uri: str = Field("", description=(
        "The Milvus server, e.g. http://127.0.0.1:19530. Unset with VECTOR_STORE=milvus: `make run` starts "
        "a local Milvus standalone (the `milvus` package) and the other programs refuse to start."))
    milvus_token: SecretStr | None = Field(None, description=(
        "A token (or user:password) for a secured Milvus or Zilliz Cloud; never printed or logged."))
    milvus_user: str = Field("", description="User name for a Milvus with authorization enabled.")
    milvus_password: SecretStr | None = Field(None, description="That user's password; never printed or logged.")
    milvus_timeout_s: int = Field(3, ge=1, description=(
        "Whole seconds one Milvus call may take, retries included, before the similarity service answers 503 "
        "vector_store_unavailable; keep it below the gateway's GATEWAY_SEARCH_TIMEOUT_S so a shopper sees that reason."))
    milvus_index_type: Literal["FLAT", "HNSW", "IVF_FLAT"] = Field("FLAT", description=(
        "The index Milvus builds per version: FLAT (exact), HNSW or IVF_FLAT; its parameters go into the manifest."))


class InternalAccess(BaseSettings):
    """The token the services' internal write routes (POST /v1/reload) ask for, and the jobs send.

    Read from the environment only, alike by the classifier, the similarity service, `lookalike index`,
    `lookalike rollback` and `lookalike run`: a flag's value would show in `ps`.
    """

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True, populate_by_name=True)

    internal_token: SecretStr | None = Field(None, validation_alias=AliasChoices("LOOKALIKE_INTERNAL_TOKEN"), description=(
        "Bearer token for the classifier's and the similarity service's internal write routes (POST /v1/reload), "
        "sent by `lookalike index --notify` and `lookalike rollback --notify`. Unset: those routes refuse every "
        "call. `make run` makes a random one per run when unset, and keeps it in var/internal-token for "
        "`make index` and `make rollback`."))
