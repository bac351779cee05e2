"""docs/development.md's layout tree names every module of the package and the workers, and nothing
that is not there: a reader looking for where something lives trusts it only while it is whole."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from kling_simulator.unified import UNIFIED_PATHS
from webhook_service.domain.task_types import TASK_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "development.md"
CHECKED = ("webhook_service", "workers")


def tree_lines() -> list[str]:
    """The lines of the code block under "## Layout"."""
    layout = DOC.read_text().split("## Layout", 1)[1]
    return layout.split("```\n", 2)[1].splitlines()


def named_paths(lines: list[str]) -> list[str]:
    """Every entry of the tree as a path from the top (a directory ends in /). An entry's depth is its
    indentation, two spaces a level; a line indented past the next level continues the one above."""
    parents: list[str] = []
    paths = []
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        if indent % 2 or indent // 2 > len(parents):
            continue  # the purpose of the entry above, continued
        name = line.split()[0]
        parents = [*parents[: indent // 2], name]
        paths.append("".join(parents))
    return paths


def checked_paths() -> list[str]:
    return [path for path in named_paths(tree_lines()) if path.startswith(tuple(f"{c}/" for c in CHECKED))]


def is_named(module: str, named: list[str]) -> bool:
    """Named by its own line or a pattern (`*_rules.py`); a package's __init__.py by its directory's."""
    package = module.removesuffix("__init__.py") if module.endswith("/__init__.py") else None
    return package in named or any(fnmatch.fnmatch(module, pattern) for pattern in named)


def test_the_tree_names_every_module_of_the_package_and_the_workers() -> None:
    named = checked_paths()
    modules = sorted(
        str(path.relative_to(ROOT)) for checked in CHECKED for path in (ROOT / checked).rglob("*.py")
    )
    missing = [module for module in modules if not is_named(module, named)]
    assert len(modules) > 100
    assert missing == [], f"docs/development.md's layout does not name {missing}"


def test_everything_the_tree_names_exists() -> None:
    named = checked_paths()
    absent = [path for path in named if not list(ROOT.glob(path.rstrip("/")))]
    assert absent == [], f"docs/development.md's layout names what is not there: {absent}"


def test_the_tree_reader_reads_nesting_globs_and_continued_lines() -> None:
    """The checks above must be able to fail: a nested entry gets its whole path, a continued line is
    no entry, a module the tree leaves out is found."""
    lines = [
        "webhook_service/",
        "  domain/            tasks",
        "    *_rules.py         the rules, one module each: text2video, image,",
        "                       expand, effects",
        "    tasks.py           the task",
        "workers/           entry points",
    ]
    assert named_paths(lines) == [
        "webhook_service/",
        "webhook_service/domain/",
        "webhook_service/domain/*_rules.py",
        "webhook_service/domain/tasks.py",
        "workers/",
    ]
    named = named_paths(lines)
    assert is_named("webhook_service/domain/image_rules.py", named)
    assert is_named("webhook_service/domain/__init__.py", named)
    assert not is_named("webhook_service/domain/usage.py", named)


def test_the_unified_paths_are_named_whole_where_the_docs_list_them() -> None:
    """api.md's list of the unified create paths the service serves, and this doc's of those the
    simulator serves: a path added to one and not to the list would read as not served."""
    served = sorted(kind.path for kind in TASK_TYPES.values() if kind.unified)
    api = (ROOT / "docs" / "api.md").read_text().split("## Kling's unified API", 1)[1].split("\n## ", 1)[0]
    assert [path for path in served if f"`{path}`" not in api and f"`POST {path}`" not in api] == []
    simulator = DOC.read_text().split("Kling's unified API too", 1)[1].split("\n\n", 1)[0]
    named = [path for path in UNIFIED_PATHS if f"`{path}`" in simulator or f"`POST {path}`" in simulator]
    assert sorted(named) == sorted(UNIFIED_PATHS) == served
