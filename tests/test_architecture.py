"""The layering holds: the domain and the workers load no web code, the package has no import cycle,
every job that jobs.py names exists, and every Redis key is under the prefix.

The import graph is read from the source (ast), imports inside functions included: an import hidden in
a function is still a dependency, and hiding one is how cycles used to get in.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from webhook_service import jobs
from webhook_service.keys import PREFIX, Keys

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("webhook_service", "workers")
WEB_MODULES = ("flask", "flask_wtf", "werkzeug", "webhook_service.web", "webhook_service.cli")
BELOW_THE_WEB = (
    "webhook_service.config",
    "webhook_service.keys",
    "webhook_service.jobs",
    "webhook_service.redaction",
    "webhook_service.replies",
    "webhook_service.services",
    "webhook_service.domain",
    "webhook_service.notify",
    "webhook_service.integrations",
    "workers",
)


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def imports_of(module: str, path: Path) -> Iterator[str]:
    """Every module `module` imports, wherever the import statement is, with the packages it loads."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import name` loads the submodule `name` when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            yield from (".".join(parts[:n]) for n in range(1, len(parts) + 1))


def graph() -> dict[str, set[str]]:
    """Module -> the modules it loads. A module's own packages are left out: Python loads them before
    the module itself, so importing through them adds no dependency."""
    return {
        module: {
            target
            for target in imports_of(module, path)
            if target in MODULES and not f"{module}.".startswith(f"{target}.")
        }
        for module, path in MODULES.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle_through_an_import_in_a_function(tmp_path: Path) -> None:
    """The check above must be able to fail: a cycle closed by an import inside a function is found."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def late():\n    from a import thing\n")
    files = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    edges = {name: {t for t in imports_of(name, path) if t in files} for name, path in files.items()}
    assert cycles(edges) == [["a", "b"]]


@pytest.mark.parametrize("layer", BELOW_THE_WEB)
def test_nothing_below_the_web_imports_it_even_inside_a_function(layer: str) -> None:
    edges = graph()
    offending = {
        f"{module} -> {target}"
        for module, targets in edges.items()
        if module == layer or module.startswith(f"{layer}.")
        for target in targets
        if target.startswith(("webhook_service.web", "webhook_service.cli"))
    }
    assert not offending


def test_importing_the_domain_and_the_workers_loads_no_web_code() -> None:
    """In a fresh interpreter, as an RQ work horse starts: every module below the web, then sys.modules."""
    below = [m for m in MODULES if m.startswith(BELOW_THE_WEB) and m != "workers.__main__"]
    script = (
        "import importlib, json, sys\n"
        f"for name in {below!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({WEB_MODULES!r}))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert len(below) > 30  # the whole domain, notify, integrations and workers were imported
    assert json.loads(result.stdout) == []


def test_the_web_app_does_load_flask() -> None:
    """The check above would pass vacuously if it could not see Flask: the app factory's module loads it."""
    script = "import sys, webhook_service.web.app; print('flask' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize("path", jobs.JOB_FUNCTIONS)
def test_every_job_function_jobs_names_exists_in_workers(path: str) -> None:
    module, _, name = path.rpartition(".")
    assert module.startswith("workers.")
    assert callable(getattr(importlib.import_module(module), name))


def _required_arguments(method: Callable[..., str]) -> int:
    """How many arguments a key's method needs, besides `self` (a tenant, a day...)."""
    parameters = list(inspect.signature(method).parameters.values())[1:]
    return sum(1 for parameter in parameters if parameter.default is inspect.Parameter.empty)


def test_every_redis_key_is_under_the_prefix() -> None:
    keys = Keys(prefix="tenant-x:")
    names = [
        value(keys, *["x"] * _required_arguments(value)) if callable(value) else value.fget(keys)
        for name, value in vars(Keys).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    ]
    assert len(names) > 15
    # A resource pack's submission keys (Keys.pack) are a Keys of their own, under the same prefix.
    assert all((name.prefix if isinstance(name, Keys) else name).startswith("tenant-x:") for name in names)
    assert Keys().prefix == PREFIX


def test_no_module_outside_keys_spells_the_prefix() -> None:
    """Keys are named in keys.py only: a key spelt elsewhere would escape another prefix."""
    spelt = [
        module
        for module, path in MODULES.items()
        if module != "webhook_service.keys" and f'"{PREFIX}' in path.read_text()
    ]
    assert spelt == []
