"""`lookalike`: one command for every program, each subcommand's flags and environment from its settings class.

    lookalike run                                   # what `make run` does
    lookalike serve gateway|classifier|similarity   # one service, as the stack and the containers run it
    lookalike index | rollback | versions           # the indexing job
    lookalike eval | eval-text | eval-feedback      # the quality reports

Each subcommand is a program's settings class (CliSubCommand), so its flags, its environment variables
and its defaults are defined once, there; `python -m indexing`, `python -m gateway`, ... parse the same
classes. A flag beats the environment, which beats the default.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, CliSubCommand, SettingsConfigDict, get_subcommand

from classifier_service.settings import ClassifierSettings
from evaluation.settings import FeedbackEvalSettings, PhotoEvalSettings, TextEvalSettings
from gateway.settings import GatewaySettings
from indexing.settings import IndexBuildSettings, RollbackSettings, VersionsSettings
from lookalike.program import Program
from lookalike.settings import read_command_line
from similarity_service.settings import SimilaritySettings
from supervisor.settings import StackSettings


class Serve(BaseModel):
    """Serve one service in this process: what `lookalike run` starts three of, and each container runs."""

    gateway: CliSubCommand[GatewaySettings] = Field(description="The web page and the public API.")
    classifier: CliSubCommand[ClassifierSettings] = Field(description="Photo in, embedding and categories out.")
    similarity: CliSubCommand[SimilaritySettings] = Field(description="Faiss and text search over the index.")


class Lookalike(BaseSettings):
    """Photo in, similar products out: self-hosted visual search for furniture stores.

    `lookalike COMMAND --help` lists a command's flags, each with its environment variable and default.
    """

    # Reads nothing from the environment itself: its fields are the subcommands, which read their own.
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_COMMAND_", extra="ignore")

    run: CliSubCommand[StackSettings] = Field(description=(
        "Run the stack on this machine (`make run`): build a missing index, start the three services."))
    serve: CliSubCommand[Serve] = Field(description="Serve one service: gateway, classifier or similarity.")
    index: CliSubCommand[IndexBuildSettings] = Field(description=(
        "Build and publish a new index version from the catalogue, then tell the services to reload."))
    rollback: CliSubCommand[RollbackSettings] = Field(description="Serve an older index version again.")
    versions: CliSubCommand[VersionsSettings] = Field(description="List the index versions kept.")
    eval: CliSubCommand[PhotoEvalSettings] = Field(description="Photo search quality report (`make eval`).")
    eval_text: CliSubCommand[TextEvalSettings] = Field(description="Text search quality report (`make eval-text`).")
    eval_feedback: CliSubCommand[FeedbackEvalSettings] = Field(description=(
        "Simulated shoppers' feedback report (`make eval-feedback`)."))


# Each command's program, by its settings class: imported only when chosen, so `lookalike --help` loads no model.
PROGRAMS: dict[type, str] = {
    StackSettings: "supervisor.stack", GatewaySettings: "gateway.__main__",
    ClassifierSettings: "classifier_service.__main__", SimilaritySettings: "similarity_service.__main__",
    IndexBuildSettings: "indexing.__main__", RollbackSettings: "indexing.__main__", VersionsSettings: "indexing.__main__",
    PhotoEvalSettings: "evaluation.photos", TextEvalSettings: "evaluation.text", FeedbackEvalSettings: "evaluation.feedback",
}


def run(command: object) -> int:
    """Run the chosen command with the settings read for it, as its own `python -m` would."""
    program: Program[Any] = importlib.import_module(PROGRAMS[type(command)]).PROGRAM
    return program.execute(command)


def main(argv: list[str] | None = None) -> int:
    chosen = get_subcommand(read_command_line(Lookalike, argv, prog="lookalike"), is_required=False)
    if chosen is None:
        print("lookalike: name a command; `lookalike --help` lists them", file=sys.stderr)
        return 2
    if isinstance(chosen, Serve) and (chosen := get_subcommand(chosen, is_required=False)) is None:
        print("lookalike serve: name a service: gateway, classifier or similarity", file=sys.stderr)
        return 2
    return run(chosen)


if __name__ == "__main__":
    sys.exit(main())
