"""servingkit.image.platform: what pip may install into the image, read from the Dockerfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from servingkit.image.platform import AL2_GLIBC, AL2023_GLIBC, ARCHITECTURES, Platform, base_image


def _dockerfile(tmp_path: Path, base_line: str) -> Path:
    path = tmp_path / "Dockerfile"
    path.write_text(f'# a comment\n{base_line}\nFROM ${{BASE_IMAGE}}\nCMD ["lambda_fn.handler.stream_handler"]\n')
    return path


def test_manylinux_tags_run_from_the_base_glibc_down_to_2_17_plus_the_2014_alias() -> None:
    tags = Platform(python="3.13", glibc=AL2023_GLIBC).manylinux_tags("aarch64")
    assert tags[0] == "manylinux_2_34_aarch64" and tags[-1] == "manylinux2014_aarch64"
    assert tags[:-1] == [f"manylinux_2_{minor}_aarch64" for minor in range(34, 16, -1)]
    assert len(tags) == len(set(tags)) == 19
    al2 = Platform(python="3.11", glibc=AL2_GLIBC).manylinux_tags("x86_64")
    assert al2[0] == "manylinux_2_26_x86_64" and "manylinux_2_27_x86_64" not in al2 and len(al2) == 11
    assert Platform(python="3.13", glibc=AL2023_GLIBC).abi == "cp313"
    assert ARCHITECTURES == ("x86_64", "aarch64")


def test_an_unknown_architecture_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'arm64'.*x86_64, aarch64"):
        Platform(python="3.13", glibc=AL2023_GLIBC).manylinux_tags("arm64")


@pytest.mark.parametrize(
    ("tag", "python", "glibc"),
    [
        ("3.13.2026.06.05.14", "3.13", AL2023_GLIBC),
        ("3.12.2025.01.01.01@sha256:" + "a" * 64, "3.12", AL2023_GLIBC),
        ("3.11.2024.05.01.10", "3.11", AL2_GLIBC),
    ],
)
def test_python_minor_and_glibc_come_from_the_base_image_arg(
    tmp_path: Path, tag: str, python: str, glibc: tuple[int, int]
) -> None:
    image = base_image(_dockerfile(tmp_path, f"ARG BASE_IMAGE=public.ecr.aws/lambda/python:{tag}"))
    assert image.image == f"public.ecr.aws/lambda/python:{tag}"
    assert image.platform == Platform(python=python, glibc=glibc)


def test_the_repository_dockerfile_is_python_3_13_on_amazon_linux_2023() -> None:
    assert base_image().platform == Platform(python="3.13", glibc=AL2023_GLIBC)


@pytest.mark.parametrize(
    "line",
    ["FROM public.ecr.aws/lambda/python:3.13", "ARG BASE_IMAGE=python:3.13-slim", "# ARG BASE_IMAGE=x"],
)
def test_a_dockerfile_without_the_base_image_arg_is_a_clear_error(tmp_path: Path, line: str) -> None:
    path = _dockerfile(tmp_path, line)
    with pytest.raises(ValueError, match=r"Dockerfile: no `ARG BASE_IMAGE=public\.ecr\.aws/lambda/python:"):
        base_image(path)
