"""The image's requirements have wheels for the image's exact platform (resolved with pip, nothing installed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servingkit.image import wheels
from servingkit.image.platform import AL2_GLIBC, ARCHITECTURES, REQUIREMENTS, Platform, base_image
from servingkit.image.wheels import MissingWheelsError, WheelCheck, check_architectures, main


@pytest.fixture(scope="module")
def image_checks() -> dict[str, WheelCheck]:
    return {c.arch: c for c in check_architectures(ARCHITECTURES, REQUIREMENTS, base_image().platform)}


@pytest.mark.parametrize("arch", ARCHITECTURES)  # the stack's default is arm64 (aarch64)
def test_requirements_have_wheels_for_the_dockerfile_platform(image_checks: dict[str, WheelCheck], arch: str) -> None:
    check = image_checks[arch]
    assert check.ok, check.summary()
    wheels = check.resolved
    assert any(w.startswith("numpy-") and w.endswith(f"_{arch}.whl") for w in wheels), wheels
    assert all(w.endswith(".whl") for w in wheels)


def test_the_check_fails_for_amazon_linux_2s_platform() -> None:
    """numpy 2.4.6, scipy 1.17.1 and scikit-learn 1.9.1 have no cp311 wheel for glibc 2.26."""
    al2 = Platform(python="3.11", glibc=AL2_GLIBC)
    (check,) = check_architectures(["x86_64"], REQUIREMENTS, al2)
    assert not check.ok and not check.problems, check.summary()
    assert {"numpy", "scipy", "scikit-learn"} <= set(check.missing), check.summary()
    assert "boto3" not in check.missing
    summary = check.summary()
    assert "Python 3.11" in summary and "glibc 2.26" in summary and "x86_64" in summary
    assert "numpy" in summary and "scikit-learn" in summary
    with pytest.raises(MissingWheelsError, match="scipy"):
        check.raise_for_missing()


def test_cli_prints_one_line_per_arch_and_exits_1_on_a_missing_wheel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reqs = tmp_path / "requirements.txt"
    # numpy 1.21 predates Python 3.13 (no cp313 wheel); the hash must be dropped, not force a download.
    reqs.write_text("# comment\nPyYAML==6.0.3 --hash=sha256:" + "0" * 64 + "\nnumpy==1.21.0  # too old\n")
    assert main(["--arch", "arm64", "-r", str(reqs)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aarch64: missing: numpy — no wheel for Python 3."), lines
    assert main(["--arch", "all", "-r", str(REQUIREMENTS)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":", 1)[0] for line in lines] == list(ARCHITECTURES)
    assert all(": ok:" in line for line in lines), lines


def test_every_missing_package_is_named_direct_and_transitive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip stops at the first failure: the check resolves line by line, then the rest, to name them all."""
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("a==1\nb==1\nc==1\n")
    calls: list[tuple[tuple[str, ...], bool]] = []

    def fake(platform: Platform, arch: str, options: object, lines: list[str], *, deps: bool, index_url: str):
        calls.append((tuple(lines), deps))
        if "a==1" in lines or ("c==1" in lines and deps):  # a has no wheel; c's dependency d has none
            failed = "a==1" if "a==1" in lines else "d>=2"
            return wheels._Run(False, (), f"ERROR: No matching distribution found for {failed}\n")
        return wheels._Run(True, ("x.whl",), "")

    monkeypatch.setattr(wheels, "_resolve", fake)
    check = wheels.check_wheels(Platform("3.13", (2, 34)), "x86_64", reqs)
    assert check.missing == ("a", "d") and not check.problems
    assert (("a==1", "b==1", "c==1"), True) in calls and (("b==1", "c==1"), True) in calls
    assert {lines for lines, deps in calls if not deps} == {("a==1",), ("b==1",), ("c==1",)}


def test_pip_runs_without_this_hosts_index_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca.pem")
    env = wheels._pip_env()
    assert "PIP_FIND_LINKS" not in env and "PIP_EXTRA_INDEX_URL" not in env
    assert env["PIP_CERT"] == "/etc/ssl/certs/ca.pem" and env["PIP_CONFIG_FILE"] == os.devnull
