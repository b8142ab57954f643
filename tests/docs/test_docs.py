"""Every ```bash block of README.md and docs/*.md, run as a new user would (docs/contributing.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.docs.blocks import documents, extract
from tests.docs.conftest import reader_env
from tests.docs.session import Session

DOCS = [p.relative_to(ROOT).as_posix() for p in documents(ROOT)]


@pytest.mark.parametrize("doc", DOCS)
def test_document_runs_as_written(doc: str, checkout: Path, emulator: str) -> None:
    blocks = extract((ROOT / doc).read_text(), doc)
    session = Session(checkout, reader_env(checkout, emulator), checkout.parent / "state.sh")
    for block in blocks:
        if block.skip:
            print(f"{block.where}: skipped: {block.skip}")
            continue
        for marker in block.markers:
            print(f"{block.where}: {marker}")
        outcome = session.run(block)
        print(f"{block.where}: {'ok' if outcome.ok else 'FAILED'} ({outcome.seconds:.1f} s)")
        assert outcome.ok, outcome.report()
