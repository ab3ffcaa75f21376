"""A program: one settings class for its flags and environment, and what it does with them.

`python -m gateway` calls a program's `main`, which reads the command line; `lookalike serve gateway`
parses the same class among its subcommands and calls `execute`. Either way a `JobError` ends it
with its message and exit status 2, said once here rather than in every program.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic

from lookalike.errors import JobError
from lookalike.settings import S, read_command_line


@dataclass(frozen=True)
class Program(Generic[S]):
    settings: type[S]
    run: Callable[[S], int]
    prog: str
    """The name `--help` and the usage give it: `python -m gateway`."""

    def execute(self, settings: S) -> int:
        """Run with settings already read; a JobError is printed and gives exit status 2."""
        try:
            return self.run(settings)
        except JobError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Read the settings from `argv` (else sys.argv), the environment and the defaults, then run."""
        return self.execute(read_command_line(self.settings, argv, prog=self.prog))
