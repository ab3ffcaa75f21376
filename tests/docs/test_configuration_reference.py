"""docs/reference/configuration.md is generated from the settings classes, and this fails when it is stale."""

from __future__ import annotations

from pydantic import BaseModel

from lookalike.settings import ConnectionLimits, LoggingSettings, UploadLimits
from supervisor.cli import Lookalike
from supervisor.settings_reference import PAGE, commands, render


def test_the_committed_configuration_reference_is_up_to_date() -> None:
    assert PAGE.read_text() == render(), "run `python -m supervisor.settings_reference` and commit the page"


def test_it_names_the_variables_people_already_set() -> None:
    page = render()
    for variable in ("`INDEX`", "`CATALOG`", "`WEIGHTS`", "`PRECISION`", "`GATEWAY_PORT`", "`CLASSIFIER_PORT`",
                     "`SIMILARITY_PORT`", "`CLASSIFIER_URL`", "`MAX_UPLOAD_BYTES`", "`TEXT_WEIGHTS`", "`LOG_FORMAT`",
                     "`FEEDBACK_DB_URL`", "`LOOKALIKE_ADMIN_TOKEN`", "`HTTP_MAX_CONNECTIONS`"):
        assert variable in page, variable
    assert "| `BATCH_SIZE` | `--batch-size` | int | `16` |" in page


def test_every_setting_says_what_it_is_for() -> None:
    """Its description is its --help and its line in the reference."""
    classes: list[type[BaseModel]] = [cls for _, cls in commands(Lookalike, ("lookalike",))]
    classes += [ConnectionLimits, LoggingSettings, UploadLimits]
    undescribed = [f"{cls.__name__}.{name}" for cls in classes for name, field in cls.model_fields.items()
                   if not (field.description or "").strip()]
    assert undescribed == []
