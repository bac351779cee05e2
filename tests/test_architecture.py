"""The layering holds: every module imports only its own layer and the layers below it, the domain and the
workers load no web code, the package has no import cycle, every job that jobs.py names exists, and
every Redis key is under the prefix.

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
from webhook_service.keys import PREFIX, Fixed, Keys

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("webhook_service", "workers")
WEB_MODULES = ("flask", "flask_wtf", "werkzeug", "webhook_service.web", "webhook_service.cli")

# The layers, lowest first, as webhook_service/__init__.py draws them: a module may import its own layer
# and any layer of a lower rank, never one of its rank or above. The web and the workers share the top
# rank and never import each other. The domain, notify and services.py are one layer: services.py builds
# the domain's and notify's stores, and their jobs take the `Services` it makes, so each imports the
# other (module by module, without a cycle, which the test below checks).
LAYERS: dict[str, tuple[int, tuple[str, ...]]] = {
    "foundations": (
        0,
        (
            "webhook_service",  # the package itself: its version
            "webhook_service.redaction",
            "webhook_service.replies",
            "webhook_service.config_values",
            "webhook_service.keys",
            "webhook_service.tenant_names",
            "webhook_service.dev_env",
            "webhook_service.event_types",
        ),
    ),
    "settings and jobs": (1, ("webhook_service.config", "webhook_service.jobs")),
    "integrations": (2, ("webhook_service.integrations",)),
    "domain": (3, ("webhook_service.domain", "webhook_service.notify", "webhook_service.services")),
    "web": (4, ("webhook_service.web", "webhook_service.cli")),
    "workers": (4, ("workers",)),
}


def layer_of(module: str) -> str | None:
    """The layer `module` belongs to (None: in none), by its own name or its package's."""
    for name, (_rank, members) in LAYERS.items():
        for member in members:
            if module == member or (member != "webhook_service" and module.startswith(f"{member}.")):
                return name
    return None


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
    for target in named_imports_of(module, path):
        parts = target.split(".")
        yield from (".".join(parts[:n]) for n in range(1, len(parts) + 1))


def named_imports_of(module: str, path: Path) -> Iterator[str]:
    """The modules `module`'s import statements name, wherever they are, without the packages that
    Python loads on the way (those are implied: a layer is checked by what a module asks for)."""
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
        yield from targets


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


def named_graph() -> dict[str, set[str]]:
    """Module -> the package's modules its import statements name."""
    return {
        module: {
            target for target in named_imports_of(module, path) if target in MODULES and target != module
        }
        for module, path in MODULES.items()
    }


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a layer of the importer's rank or above (other than its own), as a sentence."""
    found = []
    for module, targets in sorted(edges.items()):
        layer = layer_of(module)
        assert layer is not None, f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}"
        for target in sorted(targets):
            target_layer = layer_of(target)
            assert target_layer is not None, f"{target} is in no layer: add it to LAYERS"
            rank, target_rank = LAYERS[layer][0], LAYERS[target_layer][0]
            if target_layer != layer and target_rank >= rank:
                found.append(
                    f"{module} ({layer}, rank {rank}) imports {target} ({target_layer}, rank {target_rank}): "
                    "a module may import only its own layer and the layers below it"
                )
    return found


def test_every_module_imports_only_its_own_layer_and_those_below_even_inside_a_function() -> None:
    assert upward_imports(named_graph()) == []


def test_the_rank_check_names_an_upward_import_and_a_sideways_one() -> None:
    """The check above must be able to fail: the integrations reading the domain, the workers the web."""
    edges = {
        "webhook_service.integrations.metrics": {"webhook_service.domain.admission", "webhook_service.keys"},
        "workers.archive": {"webhook_service.web.context", "webhook_service.domain.archive"},
        "webhook_service.domain.archive": {"webhook_service.notify.routing", "webhook_service.services"},
    }
    assert upward_imports(edges) == [
        "webhook_service.integrations.metrics (integrations, rank 2) imports "
        "webhook_service.domain.admission (domain, rank 3): "
        "a module may import only its own layer and the layers below it",
        "workers.archive (workers, rank 4) imports webhook_service.web.context (web, rank 4): "
        "a module may import only its own layer and the layers below it",
    ]


def test_importing_the_domain_and_the_workers_loads_no_web_code() -> None:
    """In a fresh interpreter, as an RQ work horse starts: every module below the web, then sys.modules."""
    below = [m for m in MODULES if layer_of(m) != "web"]
    script = (
        "import importlib, json, sys\n"
        f"for name in {below!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({WEB_MODULES!r}))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "workers.__main__" in below  # the worker process's own module too
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
        value(keys, *["x"] * _required_arguments(value)) if callable(value) else getattr(keys, name)
        for name, value in vars(Keys).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property | Fixed))
    ]
    assert sum(isinstance(value, Fixed) for value in vars(Keys).values()) > 15  # the keys without arguments
    assert len(names) > 50
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
