"""Read the Dockerfile the way the tests need it: its instructions, ENV, COPY sources and command.

Only what this repo's Dockerfile uses: line continuations, comments, JSON-form commands, an ARG
before FROM that names the base (read as its default), RUN flags (dropped: the command is what
the tests read), and stages (`FROM x AS name`): `stage(name)` is what that target's image is built
from, its parent stages' instructions first.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for word, args in self.instructions if word == keyword]

    def stage(self, name: str) -> Dockerfile:
        """The instructions that build target `name`: its own, after those of the stages it is built FROM."""
        starts = [at for at, (word, _) in enumerate(self.instructions) if word == "FROM"]
        for begin, end in zip(starts, [*starts[1:], len(self.instructions)]):
            base, _, own = self.instructions[begin][1].partition(" AS ")
            if own.strip() == name:
                parent = base.strip()
                inherited = self.stage(parent).instructions if parent in self.stage_names else []
                return Dockerfile([*inherited, *self.instructions[begin:end]])
        raise AssertionError(f"the Dockerfile has no stage {name}")

    @property
    def stage_names(self) -> list[str]:
        """Stage names in order; the last is what `docker build` builds without --target."""
        return [args.partition(" AS ")[2].strip() for word, args in self.instructions if word == "FROM"]

    def last(self, keyword: str) -> str:
        found = self.args(keyword)
        assert found, f"the Dockerfile has no {keyword}"
        return found[-1]

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.args("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    def exec_form(self, keyword: str) -> list[str]:
        """ENTRYPOINT or CMD, which must be JSON arrays (no shell in between, signals reach Python)."""
        command = json.loads(self.last(keyword))
        assert isinstance(command, list) and all(isinstance(part, str) for part in command)
        return command

    @property
    def copied(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of every COPY, without its --flags."""
        result = []
        for args in self.args("COPY"):
            parts = [part for part in shlex.split(args) if not part.startswith("--")]
            result.append((parts[:-1], parts[-1]))
        return result


def parse_dockerfile(path: Path) -> Dockerfile:
    text = re.sub(r"\\\n", " ", path.read_text())
    dockerfile = Dockerfile()
    before_from: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "ARG" and not dockerfile.args("FROM"):
            name, _, default = args.partition("=")
            before_from[name] = default
        elif keyword == "FROM":
            args = re.sub(r"\$\{?(\w+)\}?", lambda match: before_from.get(match[1], match[0]), args)
        elif keyword == "RUN":
            while args.startswith("--"):
                args = args.partition(" ")[2]
        dockerfile.instructions.append((keyword, args))
    return dockerfile
