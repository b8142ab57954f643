"""The ```bash blocks of a Markdown document and the markers above them: what the docs tier runs.

A block is run as written unless HTML comments on the lines just above its fence say otherwise
(docs/contributing.md explains the convention):

    <!-- docs: skip REASON -->            not run; REASON is printed with the tier's output (required)
    <!-- docs: sub OLD => NEW -->         run with OLD replaced by NEW (a smaller run of the same command)
    <!-- docs: background PORT -->        the first command is a server: started in the background, waited
                                          for on 127.0.0.1:PORT, stopped by pid after the block's other commands
    <!-- docs: fails TEXT -->             must exit non-zero with TEXT in its output (an error a person can cause)

A marker anywhere else, an unknown one, or one without its argument is a MarkerError: a typo never turns
into a block that silently runs differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
MARKER = re.compile(r"^\s*<!--\s*docs:\s*(?P<name>[a-z-]+)\s*(?P<arg>.*?)\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*docs:")
KINDS = ("skip", "sub", "background", "fails")


class MarkerError(ValueError):
    """A docs marker that is malformed, unknown, misplaced, or does not fit its block."""


@dataclass(frozen=True)
class Block:
    """One ```bash block: where it is, its text, and what its markers ask."""

    path: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None = None
    subs: tuple[tuple[str, str], ...] = ()
    background: int | None = None
    fails: str | None = None
    markers: tuple[str, ...] = field(default=())

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def script(self) -> str:
        """The code as the tier runs it (every `sub` applied)."""
        code = self.code
        for old, new in self.subs:
            code = code.replace(old, new)
        return code

    def split_server(self) -> tuple[str, str]:
        """(the server command, the rest) of a `background` block: the first command, continuation lines joined."""
        lines = self.script().splitlines(keepends=True)
        taken = 0
        while taken < len(lines) and lines[taken].rstrip("\n").endswith("\\"):
            taken += 1
        return "".join(lines[: taken + 1]), "".join(lines[taken + 1 :])


def _parse_markers(path: str, found: list[tuple[int, str, str]], code: str, line: int) -> dict[str, object]:
    subs: list[tuple[str, str]] = []
    markers: list[str] = []
    out: dict[str, object] = {"subs": subs, "markers": markers}
    for at, name, arg in found:
        where = f"{path}:{at}"
        if name not in KINDS:
            raise MarkerError(f"{where}: unknown docs marker {name!r} (known: {', '.join(KINDS)})")
        if not arg:
            raise MarkerError(f"{where}: docs marker {name!r} needs {'a reason' if name == 'skip' else 'an argument'}")
        markers.append(f"{name} {arg}")
        if name == "sub":
            old, sep, new = arg.partition(" => ")
            if not sep or not old:
                raise MarkerError(f"{where}: docs marker sub wants 'OLD => NEW', got {arg!r}")
            if old not in code:
                raise MarkerError(f"{where}: docs marker sub: {old!r} is not in the block at line {line}")
            subs.append((old, new))
        elif name == "background":
            if not arg.isdigit():
                raise MarkerError(f"{where}: docs marker background wants a port number, got {arg!r}")
            out["background"] = int(arg)
        elif name in out:
            raise MarkerError(f"{where}: docs marker {name!r} given twice")
        else:
            out[name] = arg
    if "skip" in out and len(found) > 1:
        raise MarkerError(f"{path}:{found[0][0]}: a skipped block takes no other marker")
    return out


def extract(text: str, path: str) -> list[Block]:
    """Every ```bash block of `text` (a Markdown document named `path` in messages), in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    used: set[int] = set()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        fence, lang = opened["fence"], opened["lang"]
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if end == len(lines):
            raise MarkerError(f"{path}:{i + 1}: code fence never closed")
        if lang == "bash":
            found: list[tuple[int, str, str]] = []
            j = i - 1
            while j >= 0 and (m := MARKER.match(lines[j])):
                found.insert(0, (j + 1, m["name"], m["arg"]))
                used.add(j)
                j -= 1
            code = "".join(line + "\n" for line in lines[i + 1 : end])
            parsed = _parse_markers(path, found, code, i + 1)
            blocks.append(
                Block(
                    path=path,
                    line=i + 1,
                    code=code,
                    skip=parsed.get("skip"),  # type: ignore[arg-type]
                    subs=tuple(parsed["subs"]),  # type: ignore[arg-type]
                    background=parsed.get("background"),  # type: ignore[arg-type]
                    fails=parsed.get("fails"),  # type: ignore[arg-type]
                    markers=tuple(parsed["markers"]),  # type: ignore[arg-type]
                )
            )
        i = end + 1
    for n, line in enumerate(lines):
        if n not in used and ANY_MARKER.search(line) and not _inside_fence(lines, n):
            raise MarkerError(f"{path}:{n + 1}: docs marker not on the lines just above a ```bash fence")
    return blocks


def _inside_fence(lines: list[str], n: int) -> bool:
    """True when line n sits inside a code block (an example of a marker, not a marker)."""
    inside: str | None = None
    for line in lines[:n]:
        opened = FENCE.match(line)
        if inside is None and opened:
            inside = opened["fence"]
        elif inside is not None and line.strip().startswith(inside):
            inside = None
    return inside is not None


def documents(root: Path) -> list[Path]:
    """README.md and docs/*.md: every document the tier runs."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]
