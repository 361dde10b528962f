"""The guides cannot rot: every fenced block of README.md and docs/guide/*.md marked
``runnable`` (```` ```bash runnable ```` or ```` ```python runnable ````) runs, page by page
in order, in a fresh folder that sees the repository's ``configs/`` as a user in the
checkout does, and must exit 0."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def runnable_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block whose info string says ``runnable``."""
    return [(lang, code) for lang, info, code in FENCE.findall(text) if "runnable" in info.split()]


def test_the_fence_parser_finds_only_marked_blocks():
    text = "x\n```bash runnable\necho a\n```\n```bash\necho b\n```\n```python runnable\nprint(1)\n```\n"
    assert runnable_blocks(text) == [("bash", "echo a\n"), ("python", "print(1)\n")]


def test_the_readme_and_the_data_guide_have_runnable_blocks():
    found = {p.name: len(runnable_blocks(p.read_text())) for p in PAGES}
    assert found["README.md"] >= 2 and found["your-data.md"] >= 4, found


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable_blocks(p.read_text())], ids=lambda p: p.name
)
def test_runnable_blocks_run(page, tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    # `python` in a block is this interpreter, as in an activated virtualenv
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": path}
    for i, (lang, code) in enumerate(runnable_blocks(page.read_text())):
        if lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        elif lang == "python":
            cmd = [sys.executable, "-c", code]
        else:
            raise AssertionError(f"{page.name} block {i}: runnable {lang!r} is not bash or python")
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (
            f"{page.name} block {i} ({lang}) failed:\n{code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )


def test_the_methods_page_names_every_registered_method():
    from smec_jax import methods

    page = (ROOT / "docs" / "guide" / "methods.md").read_text()
    missing = [n for n in methods.names() if f"| `{n}` |" not in page]
    assert not missing, f"docs/guide/methods.md does not list {missing}"
