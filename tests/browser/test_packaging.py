"""eventscope installs as a normal Python application, and a fresh machine gets every program.

- Every external program the code, scripts and tests run is named in
  ``scripts/system-programs.tsv``, which ``make system-deps`` installs from.
- Every third-party module the installed package imports is a declared dependency, pinned
  in ``requirements.txt``.
- The built wheel, installed into a fresh virtualenv, serves the dashboard, ``/metrics``,
  the query commands and ``eventscope demo`` from a directory outside the repository.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from eventscope.localbrokers import free_port
from programs import require_program

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS_TABLE = ROOT / "scripts" / "system-programs.tsv"
# Source folders of the installed package (pyproject's package-dir maps them into eventscope).
PACKAGE_SOURCES = ["eventscope", "collectors", "graph", "pages", "simulator", "sample_data", "app.py"]
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
WHICH_CALLS = {"which", "require_program"}


def _python_files(*roots: str) -> list[Path]:
    files = []
    for root in roots:
        path = ROOT / root
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if ".venv" not in f.parts and "node_modules" not in f.parts]


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _first_word(node: ast.AST | None, returns: dict[str, str], constants: dict[str, str]) -> str | None:
    """The program an argv expression starts with, when it is written in the code."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return Path(node.value.split()[0]).name if node.value.strip() else None
    if isinstance(node, ast.Name) and node.id in constants:
        return Path(constants[node.id]).name
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        return _first_word(node.elts[0], returns, constants)
    if isinstance(node, ast.Call):
        called = _name(node.func)
        if called in WHICH_CALLS and node.args:
            return _first_word(node.args[0], returns, constants)
        return returns.get(called)  # a local helper that builds the command line
    return None


def programs_run_by(path: Path) -> set[str]:
    """Programs a Python file runs or looks up: which()/require_program() arguments, the
    first word of subprocess argv lists (also through a helper returning one), and
    Playwright's executable_path."""
    tree = ast.parse(path.read_text(), str(path))
    constants = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}
    returns: dict[str, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for ret in ast.walk(fn):
                if isinstance(ret, ast.Return) and isinstance(ret.value, (ast.List, ast.Tuple)):
                    word = _first_word(ret.value, {}, constants)
                    if word:
                        returns[fn.name] = word
    found = set()
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        called = _name(call.func)
        if called in WHICH_CALLS | SUBPROCESS_CALLS and call.args:
            if called in SUBPROCESS_CALLS and _name(getattr(call.func, "value", None)) != "subprocess":
                continue
            word = _first_word(call.args[0], returns, constants)
            if word:
                found.add(word)
        for kw in call.keywords:
            if kw.arg == "executable_path":
                word = _first_word(kw.value, returns, constants)
                if word:
                    found.add(word)
    return found


def installed_programs() -> dict[str, list[str]]:
    """scripts/system-programs.tsv: program -> the Debian packages that provide it."""
    table = {}
    for line in PROGRAMS_TABLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            program, packages = line.split("\t", 1)
            table[program] = packages.split()
    return table


def test_the_program_scan_sees_what_it_must():
    """The scanner finds each way the code names a program (so an empty result means none)."""
    found = programs_run_by(ROOT / "tests" / "unit" / "test_graph.py") | programs_run_by(ROOT / "tests" / "browser" / "test_browser.py")
    assert {"dot", "chromium"} <= found
    assert {"java", "mvn", "redis-server"} <= programs_run_by(ROOT / "eventscope" / "localbrokers.py")
    assert "node" in programs_run_by(ROOT / "tests" / "brokers" / "test_graph_topology.py")


def test_every_program_run_is_installed_by_system_deps():
    table = installed_programs()
    where: dict[str, list[str]] = {}
    for path in _python_files("eventscope", "collectors", "graph", "pages", "simulator",
                              "tests", "scripts", "bench", "app.py", "conftest.py"):
        for program in programs_run_by(path):
            where.setdefault(program, []).append(str(path.relative_to(ROOT)))
    python = {Path(sys.executable).name, "python", "python3"}
    missing = {p: files for p, files in where.items() if p not in table and p not in python}
    assert not missing, ("programs run by the code but not installed by make system-deps "
                         f"(add them to scripts/system-programs.tsv): {missing}")
    # and the install script reads exactly that table
    assert "system-programs.tsv" in (ROOT / "scripts" / "install_system_deps.sh").read_text()
    assert "scripts/install_system_deps.sh" in (ROOT / "Makefile").read_text()


def _declared() -> dict[str, str]:
    """pyproject's runtime dependencies: normalized name -> requirement."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normalize(re.match(r"[A-Za-z0-9_.-]+", req).group()): req for req in project["dependencies"]}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules the package imports (anywhere in a file) that are not ours or stdlib."""
    imports: dict[str, set[str]] = {}
    for path in _python_files(*PACKAGE_SOURCES):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("eventscope", "__future__"):
                    imports.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return imports


def test_every_runtime_import_is_a_declared_dependency():
    declared = _declared()
    providers = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"pandas", "streamlit", "plotly", "prometheus_client", "genson"} <= set(imports)
    undeclared = {}
    for module, files in imports.items():
        dists = {_normalize(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed at all"
        if not dists & set(declared):
            undeclared[module] = sorted(files)
    assert not undeclared, f"imported at run time but not in pyproject's dependencies: {undeclared}"


def test_requirements_pin_every_declared_dependency():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_normalize(name)] = version.strip()
    assert set(_declared()) <= set(pins), set(_declared()) - set(pins)


# --- the built wheel, installed as a user would ---------------------------------------

def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url}: the server exited early:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.read()
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(bin dir of a fresh venv holding only the built wheel and its dependencies, a work
    directory outside the repository)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the files git would commit (no build/ leftovers, no ignored files).
    source = tmp / "source"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, cwd=ROOT, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                            "--disable-pip-version-check", "-w", str(tmp / "dist"), str(source)],
                           capture_output=True, text=True, cwd=tmp)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("eventscope-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The fresh venv resolves the wheel's declared dependencies from the package index
    # (pinned to the lock file's versions), nothing from this checkout's environment.
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                           "--no-compile", "-c", str(ROOT / "requirements.txt"), str(wheel)],
                          capture_output=True, text=True, cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    work = tmp / "elsewhere"
    work.mkdir()
    return wheel, venv / "bin", work


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EVENTSCOPE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def test_the_wheel_holds_one_package_and_its_files(installed):
    wheel, _, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"eventscope"}
    for part in ("eventscope/app.py", "eventscope/pages/lag.py", "eventscope/collectors/kafka/offsets.py",
                 "eventscope/graph/build.py", "eventscope/simulator/runner.py",
                 "eventscope/sample_data/events.parquet", "eventscope/sample_data/meta.json",
                 "eventscope/resources/kafka-pom.xml", "eventscope/__main__.py"):
        assert part in names, part


def test_the_installed_commands_work_from_any_directory(installed):
    _, bin_dir, work = installed

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / "eventscope"), *args], capture_output=True, text=True,
                              cwd=work, env=_env(), timeout=120)

    version = importlib.metadata.version("eventscope")
    assert run("--version").stdout.strip() == f"eventscope {version}"
    as_module = subprocess.run([str(bin_dir / "python"), "-m", "eventscope", "--version"],
                               capture_output=True, text=True, cwd=work, env=_env())
    assert as_module.stdout.strip() == f"eventscope {version}"
    collected = run("collect", "--once")
    assert collected.returncode == 0, collected.stderr
    assert "sample_data" in collected.stderr  # the packaged recording, replayed
    lag = json.loads(run("lag", "--json").stdout)
    assert {row["group"] for row in lag} >= {"analytics-service", "payment-service"}
    dlq = json.loads(run("dlq", "--json").stdout)
    assert any(row["dlq"] == "orders.DLT" and row["depth"] > 0 for row in dlq)
    graph = json.loads(run("graph", "--format", "json").stdout)
    assert any(node["id"] == "service:order-service" for node in graph["nodes"])
    assert json.loads(run("alerts", "--json").stdout)
    event = next(row for row in dlq if row["dlq"] == "orders.DLT")
    assert event["reasons"]
    assert (work / ".eventscope").is_dir()


@pytest.mark.browser
def test_the_installed_dashboard_and_exporter_serve(installed, tmp_path):
    from playwright.sync_api import sync_playwright
    from test_browser import ARGS

    _, bin_dir, work = installed
    chromium = require_program("chromium")
    port, metrics_port = free_port(), free_port()
    log, metrics_log = tmp_path / "dashboard.log", tmp_path / "exporter.log"
    env = _env(EVENTSCOPE_STORE=str(tmp_path / "store"))
    dashboard = subprocess.Popen([str(bin_dir / "eventscope"), "dashboard", "--port", str(port)], cwd=work,
                                 env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    exporter = subprocess.Popen([str(bin_dir / "eventscope"), "exporter", "--port", str(metrics_port)],
                                cwd=work, env=env, stdout=metrics_log.open("w"), stderr=subprocess.STDOUT)
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/_stcore/health", dashboard, log) == b"ok"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/dead_letters", wait_until="domcontentloaded")
            page.get_by_role("heading", name="Dead letters", exact=True).wait_for(timeout=60_000)
            # the dashboard's own collector replays the packaged recording into the store
            page.get_by_text("orders.DLT").first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "installed-dead-letters.png"))
            browser.close()
        # the exporter serves the same store, as the dashboard's collector fills it
        lag_line = re.compile(r'^kafka_consumergroup_group_lag\{.*group="analytics-service".*\} \d', re.M)
        deadline = time.monotonic() + 30
        metrics = ""
        while time.monotonic() < deadline and not lag_line.search(metrics):
            metrics = _wait_http(f"http://127.0.0.1:{metrics_port}/metrics", exporter, metrics_log).decode()
            time.sleep(0.5)
        assert lag_line.search(metrics), metrics
    finally:
        _stop(dashboard)
        _stop(exporter)


def _demo_brokers(workdir: Path) -> list[int]:
    """PIDs of the demo's brokers still alive: Kafka names its work dir on its command line;
    redis-server rewrites its process title, so its pidfile tells."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(workdir).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    try:
        redis_pid = int((workdir / "redis" / "redis.pid").read_text())
        stat = Path(f"/proc/{redis_pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            pids.append(redis_pid)
    except (OSError, ValueError):
        pass
    return pids


@pytest.mark.broker
def test_the_installed_demo_runs_and_sigterm_stops_its_brokers(installed, tmp_path):
    """``eventscope demo`` from the wheel: brokers, simulator and dashboard come up; SIGTERM
    (systemd, ``timeout``) stops the brokers too, though they run in sessions of their own."""
    _, bin_dir, work = installed
    require_program("redis-server")
    require_program("java")
    require_program("rabbitmq-server")
    demo_dir = tmp_path / "demo-cwd"
    demo_dir.mkdir()
    port = free_port()
    log = tmp_path / "demo.log"
    # The broker jars make system-deps fetched; an installed demo would fetch its own.
    env = _env(EVENTSCOPE_CACHE_DIR=str(ROOT / ".cache"))
    demo = subprocess.Popen([str(bin_dir / "eventscope"), "demo", "--port", str(port)], cwd=demo_dir,
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    workdir = demo_dir / ".eventscope" / "demo"
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/_stcore/health", demo, log, timeout=120) == b"ok"
        # Redis, Kafka and RabbitMQ's Erlang VM (each names the demo's work dir, or its pidfile does)
        assert len(_demo_brokers(workdir)) >= 3, "the demo's Redis, Kafka and RabbitMQ are not running"
        kafka, redis_url = re.search(r"Kafka (\S+), Redis ([^\s,;]+)[,;]", log.read_text()).groups()
        # the simulator is running on both brokers: collect once from them into a store of ours
        env = _env(EVENTSCOPE_KAFKA_BOOTSTRAP=kafka, EVENTSCOPE_REDIS_URL=redis_url,
                   EVENTSCOPE_STORE=str(tmp_path / "store"))
        deadline = time.monotonic() + 60
        groups: set[tuple[str, str]] = set()
        while time.monotonic() < deadline and {b for b, _ in groups} != {"kafka", "redis"}:
            subprocess.run([str(bin_dir / "eventscope"), "collect", "--once"], capture_output=True,
                           cwd=demo_dir, env=env, timeout=60)
            lag = subprocess.run([str(bin_dir / "eventscope"), "lag", "--json"], capture_output=True,
                                 text=True, cwd=demo_dir, env=env)
            groups = {(row["broker"], row["group"]) for row in json.loads(lag.stdout or "[]")}
        assert {("kafka", "payment-service"), ("redis", "payment-service")} <= groups, groups
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _demo_brokers(workdir):
            time.sleep(0.2)
        assert not _demo_brokers(workdir), "brokers outlived the demo's SIGTERM"
    finally:
        _stop(demo)
        for pid in _demo_brokers(workdir):
            os.kill(pid, signal.SIGKILL)
