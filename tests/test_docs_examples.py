"""The ```python blocks of docs/api.md run, in order, in one namespace (the tutorial builds on itself)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of ``text``."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_api_doc_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the tutorial writes my-heuristic.h5
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "check: True" in out
    assert (tmp_path / "my-heuristic.h5").exists()
    # the printed figures are the ones quoted in the doc
    for line in out.splitlines():
        if line.startswith("Z = "):
            assert line in DOC.read_text(encoding="utf-8"), line


def test_readme_library_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes energy-only.h5
    readme = DOC.parents[1] / "README.md"
    blocks = python_blocks(readme.read_text(encoding="utf-8"))
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(readme), "exec"), namespace)  # noqa: S102
    assert (tmp_path / "energy-only.h5").exists()
    assert namespace["scored"].objective <= namespace["best"].bound + 1e-6 * abs(namespace["best"].bound)
