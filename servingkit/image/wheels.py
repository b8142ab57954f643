"""Do the image's requirements have wheels for the image's exact platform? A static check, without Docker.

The Dockerfile installs `requirements.txt` with `--only-binary=:all:` on the base image's Python and glibc
(`servingkit.image.platform`). This resolves the same file as pip would there, from the host:

    pip install --dry-run --only-binary=:all: --python-version 3.13 --implementation cp --abi cp313
        --platform manylinux_2_34_<arch> ... --platform manylinux2014_<arch> --target <tmp> -r requirements.txt

pip does not widen `--platform` by itself, so every manylinux tag the base accepts is passed. `--dry-run`
reads PEP 658 metadata from the index and downloads no wheel; `--hash` options are dropped for the same
reason (hash-checking mode makes pip download every wheel; the Docker build still checks them).

pip stops at the first requirement it cannot satisfy. When the whole file fails, each requirement line is
resolved on its own (`--no-deps`, concurrently) to name every direct requirement without a wheel, and the
remaining lines are resolved together once more to name a missing transitive dependency.

Only the index decides, as on a fresh machine or in `docker build`: pip runs with no configuration file and
without this host's `PIP_*` settings (extra indexes, find-links, constraints), except network ones (CA
bundle, proxy, timeout). Environment markers are evaluated for the host (pip's `--platform` does not change
`platform_machine`); `requirements.txt` has none.

    python -m servingkit.image.wheels [--arch x86_64|aarch64|all] [-r requirements.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from servingkit.image.platform import ARCHITECTURES, REQUIREMENTS, Platform, base_image, requirement_lines

PYPI = "https://pypi.org/simple"
PIP_TIMEOUT_S = 300
# Settings that only say how to reach the index, not which index or which files: kept from the host.
_NETWORK_PIP_VARS = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_DEFAULT_TIMEOUT", "PIP_TIMEOUT", "PIP_RETRIES")
_NOT_FOUND = re.compile(r"No matching distribution found for (?P<req>[A-Za-z0-9][A-Za-z0-9._-]*)")
_NAME = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_UNREACHABLE = (
    "Could not fetch URL",
    "NewConnectionError",
    "Max retries exceeded",
    "ConnectionError",
    "SSLError",
    "ProxyError",
    "Temporary failure in name resolution",
)


class MissingWheelsError(RuntimeError):
    """Some requirement has no wheel for the image's platform; the message names them."""


def canonical(name: str) -> str:
    """PEP 503 name: `scikit_learn` and `Scikit.Learn` are `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class WheelCheck:
    """The outcome for one requirements file on one Python + glibc + architecture."""

    requirements: Path
    platform: Platform
    arch: str
    resolved: tuple[str, ...] = ()
    """Wheel file names pip chose (whole-file resolve succeeded)."""
    missing: tuple[str, ...] = ()
    """Canonical names of the packages with no wheel for this platform."""
    problems: tuple[str, ...] = ()
    """pip failures that name no package (index unreachable, conflicting pins, ...)."""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problems

    @property
    def target(self) -> str:
        glibc = ".".join(map(str, self.platform.glibc))
        return (
            f"Python {self.platform.python} ({self.platform.abi}), glibc {glibc} (manylinux_2_17..{glibc}), {self.arch}"
        )

    def summary(self) -> str:
        """One line: `x86_64: ok ...` or `aarch64: missing: numpy, scipy ...`."""
        if self.ok:
            return f"{self.arch}: ok: {len(self.resolved)} wheels for {self.target}, {self.requirements}"
        parts = []
        if self.missing:
            parts.append(f"missing: {', '.join(self.missing)}")
        parts.extend(f"error: {p}" for p in self.problems)
        return f"{self.arch}: {'; '.join(parts)} — no wheel for {self.target}, {self.requirements}"

    def raise_for_missing(self) -> WheelCheck:
        if not self.ok:
            raise MissingWheelsError(self.summary())
        return self


@dataclass(frozen=True, slots=True)
class _Requirements:
    options: list[str] = field(default_factory=list)
    """Option lines (`--index-url`, `-c`), repeated in every partial file."""
    lines: list[str] = field(default_factory=list)
    """One requirement each, comments and hashes removed, continuation lines joined."""


def _parse(path: Path, seen: set[Path] | None = None) -> _Requirements:
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return _Requirements()
    seen.add(path)
    out = _Requirements()
    for line in requirement_lines(path.read_text()):
        nested = re.match(r"^(-r|--requirement)[=\s]\s*(\S+)$", line)
        if nested:
            inner = _parse(path.parent / nested[2], seen)
            out.options.extend(inner.options)
            out.lines.extend(inner.lines)
        elif line.startswith("-c") or line.startswith("--constraint"):
            target = re.split(r"[=\s]\s*", line, maxsplit=1)[-1]
            out.options.append(f"--constraint {(path.parent / target).resolve()}")
        elif line.startswith("-"):
            out.options.append(line)
        else:
            out.lines.append(line)
    return out


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in _NETWORK_PIP_VARS}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


@dataclass(frozen=True, slots=True)
class _Run:
    ok: bool
    wheels: tuple[str, ...]
    stderr: str


def _resolve(
    platform: Platform, arch: str, options: Sequence[str], lines: Sequence[str], *, deps: bool, index_url: str
) -> _Run:
    """One `pip install --dry-run` of these lines for the platform."""
    with tempfile.TemporaryDirectory(prefix="wheels-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("\n".join([*options, *lines]) + "\n")
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--report", str(report), "--only-binary=:all:", "--index-url", index_url,
            "--python-version", platform.python, "--implementation", "cp", "--abi", platform.abi,
            *(arg for tag in platform.manylinux_tags(arch) for arg in ("--platform", tag)),
            "--target", str(Path(tmp) / "target"), "-r", str(reqs),
        ]  # fmt: skip
        if not deps:
            command.append("--no-deps")
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=_pip_env(), timeout=PIP_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            return _Run(False, (), f"pip did not answer within {PIP_TIMEOUT_S} s")
        wheels: tuple[str, ...] = ()
        if done.returncode == 0 and report.is_file():
            installs = json.loads(report.read_text()).get("install", [])
            wheels = tuple(str(item["download_info"]["url"]).rsplit("/", 1)[-1] for item in installs)
        return _Run(done.returncode == 0, wheels, done.stderr)


def _not_found(stderr: str) -> list[str]:
    return [canonical(m["req"]) for m in _NOT_FOUND.finditer(stderr)]


def _problem(stderr: str) -> str:
    if any(marker in stderr for marker in _UNREACHABLE):
        return "cannot reach the package index (pip: " + _last_error(stderr) + ")"
    return "pip: " + _last_error(stderr)


def _last_error(stderr: str) -> str:
    errors = [line.removeprefix("ERROR: ").strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    meaningful = [line for line in stderr.splitlines() if line.strip() and "is ignored" not in line]
    return (errors or meaningful or ["failed without a message"])[-1][:300]


def check_wheels(
    platform: Platform | None = None,
    arch: str = "aarch64",
    requirements: Path = REQUIREMENTS,
    *,
    index_url: str = PYPI,
) -> WheelCheck:
    """Resolve `requirements` for the platform (default: the Dockerfile's) and name every package without a wheel."""
    platform = platform or base_image().platform
    platform.manylinux_tags(arch)  # an unknown architecture fails here, not in pip
    reqs = _parse(Path(requirements))
    if not reqs.lines:
        return WheelCheck(Path(requirements), platform, arch)
    whole = _resolve(platform, arch, reqs.options, reqs.lines, deps=True, index_url=index_url)
    if whole.ok:
        return WheelCheck(Path(requirements), platform, arch, resolved=whole.wheels)
    if any(marker in whole.stderr for marker in _UNREACHABLE):
        return WheelCheck(Path(requirements), platform, arch, problems=(_problem(whole.stderr),))

    def alone(line: str) -> _Run:
        return _resolve(platform, arch, reqs.options, [line], deps=False, index_url=index_url)

    with ThreadPoolExecutor(max_workers=min(8, len(reqs.lines) or 1)) as pool:
        runs = list(pool.map(alone, reqs.lines))
    missing = [_name(line) for line, run in zip(reqs.lines, runs, strict=True) if not run.ok]
    problems = [_problem(run.stderr) for run in runs if not run.ok and not _not_found(run.stderr)]
    rest = [line for line, run in zip(reqs.lines, runs, strict=True) if run.ok]
    if not missing:
        transitive = _not_found(whole.stderr)
        missing.extend(transitive)
        if not transitive:
            problems.append(_problem(whole.stderr))
    elif rest:  # the direct failures masked the rest: resolve what is left, with dependencies, once more
        again = _resolve(platform, arch, reqs.options, rest, deps=True, index_url=index_url)
        if not again.ok:
            transitive = _not_found(again.stderr)
            missing.extend(transitive)
            if not transitive:
                problems.append(_problem(again.stderr))
    return WheelCheck(
        Path(requirements), platform, arch, missing=tuple(_unique(missing)), problems=tuple(_unique(problems))
    )


def _name(line: str) -> str:
    found = _NAME.match(line)
    return canonical(found["name"]) if found else line


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def check_architectures(
    archs: Sequence[str] = ARCHITECTURES,
    requirements: Path = REQUIREMENTS,
    platform: Platform | None = None,
    *,
    index_url: str = PYPI,
) -> list[WheelCheck]:
    """`check_wheels` for several architectures at once (concurrently), in the order given."""
    platform = platform or base_image().platform
    with ThreadPoolExecutor(max_workers=len(archs) or 1) as pool:
        return list(pool.map(lambda a: check_wheels(platform, a, requirements, index_url=index_url), archs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servingkit.image.wheels",
        description="Check that every requirement has a wheel for the Lambda image's Python, glibc and architecture "
        "(read from the Dockerfile). Exit status 1 when a wheel is missing.",
    )
    parser.add_argument(
        "--arch",
        choices=[*ARCHITECTURES, "arm64", "all"],
        default="all",
        help="wheel architecture (arm64 = aarch64, Lambda's name); default: %(default)s",
    )
    parser.add_argument("-r", "--requirements", type=Path, default=REQUIREMENTS, help="default: %(default)s")
    parser.add_argument("--index-url", default=PYPI, help="package index (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.requirements.is_file():
        parser.error(f"no requirements file {args.requirements}")
    archs = list(ARCHITECTURES) if args.arch == "all" else ["aarch64" if args.arch == "arm64" else args.arch]
    results = check_architectures(archs, args.requirements, base_image().platform, index_url=args.index_url)
    for result in results:
        print(result.summary())
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
