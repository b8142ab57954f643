"""The docs tier's extractor: which blocks run, and how their markers are read (tests/docs/blocks.py)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.docs.blocks import MarkerError, documents, extract

DOC = """# Title

```bash
echo one
```

Text.

<!-- docs: skip needs an AWS account -->
```bash
cdk deploy
```

```text
not shell
```

<!-- docs: sub --records 50000 => --records 100 -->
<!-- docs: background 8080 -->
```bash
make demo ARGS="--records 50000 --serve" \\
  --more
curl -s localhost:8080/health
```

<!-- docs: fails port 8080 -->
```bash
make serve
```
"""


def test_blocks_their_lines_and_markers() -> None:
    blocks = extract(DOC, "doc.md")
    assert [b.line for b in blocks] == [3, 10, 20, 27]
    first, skipped, server, failing = blocks
    assert first.code == "echo one\n" and first.skip is None and first.markers == ()
    assert skipped.skip == "needs an AWS account" and skipped.where == "doc.md:10"
    assert server.background == 8080
    assert server.script().startswith('make demo ARGS="--records 100 --serve"')
    command, rest = server.split_server()
    assert command == 'make demo ARGS="--records 100 --serve" \\\n  --more\n'
    assert rest == "curl -s localhost:8080/health\n"
    assert failing.fails == "port 8080"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("<!-- docs: skip -->", "needs a reason"),
        ("<!-- docs: skip   -->", "needs a reason"),
        ("<!-- docs: skp reason -->", "unknown docs marker 'skp'"),
        ("<!-- docs: sub nothing here -->", "wants 'OLD => NEW'"),
        ("<!-- docs: sub absent => x -->", "is not in the block"),
        ("<!-- docs: background eighty -->", "wants a port number"),
    ],
)
def test_bad_markers_fail_with_the_line(marker: str, message: str) -> None:
    with pytest.raises(MarkerError, match=message) as caught:
        extract(f"text\n{marker}\n```bash\necho hi\n```\n", "d.md")
    assert str(caught.value).startswith("d.md:2:")


def test_a_marker_that_is_not_above_a_bash_fence_fails() -> None:
    with pytest.raises(MarkerError, match="not on the lines just above"):
        extract("<!-- docs: skip reason -->\n\n```bash\necho hi\n```\n", "d.md")
    with pytest.raises(MarkerError, match="not on the lines just above"):
        extract("<!-- docs: skip reason -->\n```python\nx = 1\n```\n", "d.md")


def test_a_skip_takes_no_other_marker_and_an_example_inside_a_fence_is_no_marker() -> None:
    with pytest.raises(MarkerError, match="takes no other marker"):
        extract("<!-- docs: sub a => b -->\n<!-- docs: skip why -->\n```bash\na\n```\n", "d.md")
    assert extract("```text\n<!-- docs: skip REASON -->\n```\n", "d.md") == []


def test_every_document_parses_and_every_skip_has_a_reason() -> None:
    for path in documents(ROOT):
        for block in extract(path.read_text(), path.name):
            assert block.skip is None or len(block.skip.split()) >= 3, f"{block.where}: say why it is skipped"
