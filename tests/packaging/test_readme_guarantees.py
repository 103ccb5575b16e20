"""README's "Guarantees" names, for each promise, the tests that prove it: they must exist."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_guarantees_exists():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Guarantees"):]
    section = section[:section.index("\n## ", 1)]
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", section)
    assert len(named) >= 10
    promises = [line for line in section.splitlines() if line.startswith("| **")]
    assert len(promises) >= 6 and all("::" in line for line in promises)  # each promise names its proof
    for path, name in named:
        source = (REPO / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name} named in README does not exist"
