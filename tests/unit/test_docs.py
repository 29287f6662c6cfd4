"""The project's docs stand on their own: nothing cites a brief outside the repository, every
guarantee names tests that exist, and README's commands are real ones."""

from __future__ import annotations

import ast
import re
import subprocess

import pytest

from tests.support.service import ROOT

CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)`")
"""`tests/FILE.py::TEST`, or `::TEST` for another test of the file cited just before."""
BRIEF = "DESIGN" + ".md"  # spelled apart so that this file does not cite it either
CODE_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def tracked_files() -> list[str]:
    done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return done.stdout.split()


def test_no_file_cites_a_design_brief_outside_the_repository() -> None:
    citing = [
        name
        for name in tracked_files()
        if (ROOT / name).is_file() and BRIEF in (ROOT / name).read_text(errors="replace")
    ]
    assert citing == []


def functions_in(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_guarantee_names_tests_that_exist() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert [s.split(".")[0] for s in sections] == [f"G{i}" for i in range(1, 12)]
    for section in sections:
        cited = CITED_TEST.findall(section)
        assert cited and cited[0][0], f"{section.splitlines()[0]} names no test"
        path = ""
        for named_path, name in cited:
            path = named_path or path
            assert name in functions_in(path), f"{path}::{name} does not exist"


def test_readme_commands_exist() -> None:
    from floyo_pipeline.cli import COMMANDS

    text = (ROOT / "README.md").read_text()
    code = "\n".join(CODE_BLOCK.findall(text))
    used = set(re.findall(r"^floyo-pipeline ([a-z-]+)", code, flags=re.MULTILINE))
    assert used and used <= set(COMMANDS)
    dev = (ROOT / "dev.py").read_text()
    for command in set(re.findall(r"python3 dev\.py (\w+)", text)) | {"demo", "test"}:
        assert f'"{command}"' in dev, f"README runs `python3 dev.py {command}`, which dev.py does not know"
