"""The README's module map names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_module_map_matches_the_package():
    modules = {p.stem for p in (ROOT / "course_utils").glob("*.py") if not p.stem.startswith("__")}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    developers = readme[readme.index("## For developers"):]
    mapped = set(re.findall(r"^\s*\| `(\w+)` \|", developers, flags=re.MULTILINE))
    assert mapped == modules, (f"missing from the README: {sorted(modules - mapped)}; "
                               f"not in the package: {sorted(mapped - modules)}")
