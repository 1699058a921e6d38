"""The layers of pyproject.toml's ``[tool.importlinter]`` contracts hold (README, "Architecture").

import-linter reads the package from the file system. Installed, ``collectors/``, ``graph/``,
``pages/``, ``simulator/`` and ``sample_data/`` are sub-packages of ``eventscope`` (pyproject's
package-dir), so the check runs on a copy of the checkout's modules in that layout.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUB_PACKAGES = ("collectors", "graph", "pages", "simulator", "sample_data")
CONFIG = ROOT / "pyproject.toml"


def _python_only(folder, names):
    return [n for n in names if not n.endswith(".py") and not (Path(folder) / n).is_dir() or n == "__pycache__"]


@pytest.fixture(scope="module")
def installed_layout(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT / "eventscope", site / "eventscope", ignore=_python_only)
    for name in SUB_PACKAGES:
        shutil.copytree(ROOT / name, site / "eventscope" / name, ignore=_python_only)
    return site


def _lint(site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())", "--config", str(CONFIG), "--no-cache"],
        cwd=site, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold(installed_layout):
    result = _lint(installed_layout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_up_the_layers_breaks_the_contract(installed_layout, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(installed_layout, site)
    lag = site / "eventscope" / "analysis" / "lag.py"
    lag.write_text(lag.read_text() + "\nfrom eventscope.store import Store  # noqa\n")
    result = _lint(site)
    assert result.returncode != 0
    assert "eventscope.analysis.lag -> eventscope.store" in result.stdout


def _layer_modules() -> set[str]:
    contracts = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["id"] == "layers")["layers"]
    return {name.strip() for layer in layers for group in layer.split("|") for name in group.split(":")}


def test_every_module_has_a_layer(installed_layout):
    package = installed_layout / "eventscope"
    modules = {"eventscope." + (p.stem if p.is_file() else p.name) for p in package.iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert modules - _layer_modules() == set(), "add these to a layer in pyproject.toml"
    assert _layer_modules() - modules == set(), "these layers name no module"


def _imports_inside_blocks(path: Path):
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset > 0:
            yield node.lineno, lines[node.lineno - 1]


def test_imports_are_at_module_level_unless_a_comment_says_why():
    """Pages are Streamlit scripts and stay out; everywhere else an import inside a function
    or block says on its line why it is there (a client library only some runs need, ...)."""
    files = [ROOT / "app.py"] + [p for d in ("eventscope", "collectors", "graph", "simulator")
                                 for p in sorted((ROOT / d).rglob("*.py"))]
    hidden = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in files
              for n, line in _imports_inside_blocks(path) if "#" not in line]
    assert hidden == []
