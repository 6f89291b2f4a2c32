"""A reader of Dockerfiles and .dockerignore files, for the image tests (no Docker engine
needed): stages with their instructions, flags and both command forms; which paths of a
build context are sent to the daemon.

    dockerfile = parse_dockerfile(Path("Dockerfile").read_text())
    dockerfile.last("store", "CMD").words  # ['mds', 'serve', ...]
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: tuple[tuple[str, str], ...]
    value: str
    line: int

    def flag(self, name: str) -> list[str]:
        return [value for key, value in self.flags if key == name]

    @property
    def words(self) -> list[str]:
        """The command: the JSON (exec) form's words, a shell form as ``/bin/sh -c``."""
        value = self.value.removeprefix("CMD ") if self.keyword == "HEALTHCHECK" else self.value
        if value.startswith("["):
            words = json.loads(value)
            assert isinstance(words, list), f"line {self.line}: not a JSON list"
            return words
        return ["/bin/sh", "-c", value]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]  # the ARGs before the first FROM, with their defaults
    stages: dict[str, Stage]

    def chain(self, target: str) -> list[Stage]:
        """The stages a target is built on, the first (on an image) first."""
        stages = [self.stages[target]]
        while stages[0].base in self.stages:
            stages.insert(0, self.stages[stages[0].base])
        return stages

    def all(self, target: str, keyword: str) -> list[Instruction]:
        return [i for stage in self.chain(target) for i in stage.all(keyword)]

    def last(self, target: str, keyword: str) -> Instruction | None:
        found = self.all(target, keyword)
        return found[-1] if found else None

    def env(self, target: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for instruction in self.all(target, "ENV"):
            words = shlex.split(instruction.value)
            if "=" not in words[0]:  # the legacy form: ENV KEY value with spaces
                env[words[0]] = " ".join(words[1:])
                continue
            env |= dict(word.split("=", 1) for word in words)
        return env


_FLAG = re.compile(r"--([a-z][a-z-]*)=(\S+)\s+")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Instructions with their continuations joined; comment and blank lines (also inside
    a continuation, as Docker reads them) left out."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        yield start, pending + stripped
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], text)


def parse_dockerfile(text: str) -> Dockerfile:
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line, logical in _logical_lines(text):
        keyword, _, rest = logical.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        flags = []
        while match := _FLAG.match(rest):
            flags.append((match[1], match[2]))
            rest = rest[match.end() :]
        if keyword == "FROM":
            words = rest.split()
            named = len(words) == 3 and words[1].upper() == "AS"
            current = Stage(words[2] if named else str(len(stages)), _expand(words[0], args))
            stages[current.name] = current
        elif current is None:
            assert keyword == "ARG", f"line {line}: {keyword} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            current.instructions.append(Instruction(keyword, tuple(flags), rest, line))
    return Dockerfile(args, stages)


# -- .dockerignore ---------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    include: bool  # a `!` line: back into the context
    glob: str
    regex: re.Pattern[str]


def glob_regex(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match per segment, ``**`` for any number of
    directories) as a regex over the slash-separated paths of the context."""
    regex = ""
    for part in glob.strip("/").split("/"):
        if part == "**":
            regex += "(?:[^/]+/)*"
            continue
        for char in part:
            regex += {"*": "[^/]*", "?": "[^/]", "[": "[", "]": "]"}.get(char, re.escape(char))
        regex += "/"
    return re.compile(regex.removesuffix("/"))


def ignore_patterns(text: str) -> list[IgnorePattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            glob = line.removeprefix("!").strip()
            patterns.append(IgnorePattern(line.startswith("!"), glob, glob_regex(glob)))
    return patterns


def in_context(relative: str, patterns: list[IgnorePattern]) -> bool:
    """Whether a path is sent: the last pattern that matches it or one of its parent
    directories decides (Docker's rule)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in patterns:
        if any(pattern.regex.fullmatch(prefix) for prefix in prefixes):
            included = pattern.include
    return included


def may_hold_context(relative: str, patterns: list[IgnorePattern]) -> bool:
    """Whether a directory is sent or a `!` pattern may take something below it back."""
    if in_context(relative, patterns):
        return True
    parts = relative.split("/")
    for pattern in patterns:
        globs = pattern.glob.strip("/").split("/")
        if pattern.include and len(globs) > len(parts):
            heads = zip(parts, globs, strict=False)
            if "**" in globs[: len(parts)] or all(fnmatch.fnmatchcase(p, g) for p, g in heads):
                return True
    return False


def copy_context(root: Path, destination: Path) -> list[str]:
    """Copy what ``root/.dockerignore`` lets into a build context of ``root``; the paths."""
    patterns = ignore_patterns((root / ".dockerignore").read_text())
    copied = []
    for directory, dirs, files in os.walk(root):
        here = Path(directory).relative_to(root).as_posix()
        prefix = "" if here == "." else here + "/"
        dirs[:] = [d for d in dirs if may_hold_context(prefix + d, patterns)]
        for name in files:
            if in_context(prefix + name, patterns):
                (destination / prefix).mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / prefix / name, destination / prefix / name)
                copied.append(prefix + name)
    return copied
