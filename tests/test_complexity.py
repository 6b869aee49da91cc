"""No function in newsletter/ is more complex than radon's grade C (cyclomatic complexity 20):
a newcomer can read each one in a sitting."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_rank, cc_visit
from radon.visitors import Function

PACKAGE = Path(__file__).resolve().parent.parent / "newsletter"


def test_no_function_above_grade_c() -> None:
    found = []
    for source in sorted(PACKAGE.rglob("*.py")):
        where = source.relative_to(PACKAGE).as_posix()
        for block in cc_visit(source.read_text(encoding="utf-8")):
            if not isinstance(block, Function) or cc_rank(block.complexity) <= "C":
                continue
            found.append(f"{where}: {block.fullname} {cc_rank(block.complexity)} "
                         f"({block.complexity})")
    assert not found, "split these functions:\n" + "\n".join(found)
