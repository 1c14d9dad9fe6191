"""The docs build without a broken link, the README's links resolve, and the project stands alone: nothing in it
points at a file or a tracker that its users cannot open."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["README.md", "mkdocs.yml", "pyproject.toml", "train.py", "evaluate.py", "gdrdd", "conf", "docs", "sweeps",
           "bench", "tests"]


def test_docs_build_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "robust" / "index.html").is_file()


def test_readme_links_reach_existing_docs_and_headings():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", readme)
    assert len(links) >= 10
    for target, anchor in links:
        page = ROOT / target
        assert page.is_file(), target
        if anchor:
            headings = [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]
            slugs = {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h.lower())).strip("-") for h in headings}
            assert anchor in slugs, (target, anchor, slugs)


def test_no_file_cites_the_internal_brief_or_an_issue_number():
    pattern = re.compile("DESIGN" + r"\.md|\b[Ii]ssue" + r" #?[0-9]+|\.\./shared")
    offenders = []
    for entry in SOURCES:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*")):
            if file.is_file() and file.suffix in {".py", ".md", ".yaml", ".yml", ".toml"}:
                offenders += [f"{file.relative_to(ROOT)}:{n}" for n, line in enumerate(file.read_text().splitlines(), 1)
                              if pattern.search(line)]
    assert not offenders, offenders
