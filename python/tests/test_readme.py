"""The README's Python examples run as written."""

import os
import re

from conftest import REPO


def python_blocks():
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_python_examples_run(tmp_path, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 2
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for code in blocks:
            exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "P(inner ⊆ truth ⊆ outer) >= 0.9" in out
    joint = float(re.search(r"joint coverage: ([0-9.]+)", out).group(1))
    assert joint >= 0.85
