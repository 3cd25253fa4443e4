"""Project-level checks: lint, documented schema, import direction."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.trace.schema import COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    result = subprocess.run(
        [ruff, "check", "simulator", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_schema_column_is_documented_with_its_meaning():
    readme = (ROOT / "traces" / "README.md").read_text()
    for name, (_, required, meaning) in COLUMNS.items():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"traces/README.md does not document column {name}"
        assert meaning in row, f"traces/README.md's meaning of {name} differs from schema.py"
        assert ("| yes |" in row) == required, name


def test_imports_flow_one_way():
    """Library modules never import the CLI; the trace package never imports the engine."""
    for path in (ROOT / "simulator").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if not module.startswith(
                    ("simulator.cli", "simulator.__main__", "simulator._entry")
                ):
                    assert not name.startswith("simulator.cli"), f"{module} imports {name}"


def test_engine_kernels_never_allocate():
    """The kernels run without numba's reference counting (``_nrt=False``): no numpy calls."""
    for name in (
        "engine/kernels.py",
        "engine/fused.py",
        "engine/prefix_cache.py",
        "perf/kernel.py",
    ):
        tree = ast.parse((ROOT / "simulator" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any(
                "njit" in ast.unparse(d) for d in node.decorator_list
            ):
                calls = [ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)]
                assert not [c for c in calls if c.startswith(("np.", "numpy."))], (name, node.name)
                assert all("_nrt=False" in ast.unparse(d) for d in node.decorator_list), node.name


def test_a_wheel_installs_every_shipped_profile_and_the_compiled_kernels():
    """``pip install .`` (no -e) must carry the calibration profiles (top-level folder,
    installed as data files where ``select._profiles_dir`` looks) and the compiled kernels
    (package data): without them a wheel install silently runs uncalibrated and compiles."""
    import glob
    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["data-files"]["share/simreplay/profiles"]
    shipped = {str(p.relative_to(root)) for p in (root / "calibration" / "profiles").glob("*")}
    covered = {f for pattern in patterns for f in glob.glob(pattern, root_dir=root)}
    assert shipped and shipped == covered
    kernel_patterns = config["package-data"]["simulator"]
    kernels = {
        str(p.relative_to(root / "simulator"))
        for p in (root / "simulator" / "_jitcache").rglob("*")
        if p.is_file()
    }
    covered = {
        f for pattern in kernel_patterns for f in glob.glob(pattern, root_dir=root / "simulator")
    }
    assert kernels and kernels == covered


def test_importing_simulator_first_turns_numpy_huge_pages_off():
    """The CLI imports simulator before numpy: numpy then backs big arrays with 4 KiB pages
    (measured ~1 s faster for a 1M-request run); NUMPY_MADVISE_HUGEPAGE=1 keeps numpy's."""
    import os
    import sys

    code = (
        "import simulator, numpy\n"
        "m = getattr(numpy, '_core', numpy).multiarray\n"
        "print(m._set_madvise_hugepage(True))"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    for setting, expected in ((None, "False"), ("1", "True")):
        if setting is not None:
            env["NUMPY_MADVISE_HUGEPAGE"] = setting
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected, out.stderr


AZURE_CSV = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51,879,20
"""


@pytest.mark.parametrize("trace", ["traces/chat-1h.parquet", "azure.csv"])
def test_run_skips_the_slow_optional_imports(trace, tmp_path):
    """``simreplay run`` on a canonical parquet trace or a raw Azure CSV (no ``--out``:
    writing the request table uses Arrow's take) never imports pyarrow.compute or
    pyarrow.dataset (0.1 s of start-up together), pydantic (typer >= 0.29 would) or rich
    (the CLI prints plain lines), and its kernels load without numba's lowering modules
    (``_numba_cache.lean_loads``)."""
    import sys

    if trace == "azure.csv":
        (tmp_path / trace).write_text(AZURE_CSV)
        trace = str(tmp_path / trace)
    code = (
        "import sys\n"
        "from simulator.cli import main\n"
        "sys.argv = ['simreplay', 'run', sys.argv[1], '--gpus', '2xA100', '--json']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "names = ('pyarrow.compute', 'pyarrow.dataset', 'pydantic', 'rich', 'numba.np.linalg')\n"
        "print([n for n in names if n in sys.modules], file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, trace],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr
    assert '"num_completed"' in out.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run"], " run: Missing argument 'trace'"),
        (["run", "t.parquet", "--bogus"], " run: No such option: --bogus"),
        (["run", "t.parquet", "--max-num-seqs", "abc"], "'abc' is not a valid int"),
        (["calibrate", "validate", "b.json", "--gpus", "1xH100"], "Missing option '--model'"),
        (["nosuch"], "No such command 'nosuch'"),
        # click raises these without a context: the line named "simreplay", not the command.
        (["run", "t.parquet", "--gpus"], "error: simreplay run: Option '--gpus' requires"),
        (["sweep", "run", "t.parquet", "--out"], "error: simreplay sweep run: Option '--out'"),
    ],
)
def test_a_command_line_that_does_not_parse_gets_one_line_and_status_1(args, fragment):
    """As every other bad input: one line on stderr naming the command, exit status 1 (not
    click's boxed usage text and status 2)."""
    out = subprocess.run(
        [sys.executable, "-m", "simulator", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("args", "status", "stdout_fragment"),
    [(["models", "list"], 0, "llama-3.1-8b"), (["run", "no-such.parquet"], 1, "")],
)
def test_the_executable_exits_quickly_with_the_commands_status(args, status, stdout_fragment):
    """``entry`` ends the process without Python's teardown, after the atexit handlers ran and
    stdout was flushed, with the command's own status."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('atexit handler ran\\n'))\n"
        "sys.argv = ['simreplay', *sys.argv[1:]]\n"
        "from simulator.cli import entry\n"
        "entry()\n"
        "print('not reached')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == status, out.stderr
    assert stdout_fragment in out.stdout and "not reached" not in out.stdout
    assert out.stderr.endswith("atexit handler ran\n"), out.stderr


def test_only_the_named_command_is_built_and_everything_else_gets_the_whole_app():
    from simulator.cli import _app_for, app

    only_run = _app_for(["run", "t.parquet", "--gpus", "1xA100"])
    assert [c.name for c in only_run.registered_commands] == ["run"]
    assert only_run.registered_groups == [] and len(app.registered_commands) > 1
    only_sweep = _app_for(["sweep", "status"])
    assert [g.name for g in only_sweep.registered_groups] == ["sweep"]
    assert only_sweep.registered_commands == []
    for args in ([], ["--help"], ["--version"], ["nosuch"], ["RUN"]):
        assert _app_for(args) is app


def test_version_names_the_build_a_sweep_store_records():
    from simulator import __version__
    from simulator.fingerprint import build_id

    out = subprocess.run(
        [sys.executable, "-m", "simulator", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"simreplay {__version__} (build {build_id()})\n"
    assert build_id().startswith(f"{__version__}+")


def test_simreplay_alone_prints_the_help():
    out = subprocess.run(
        [sys.executable, "-m", "simulator"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "Usage: " in out.stdout and "Replay a trace" in out.stdout


def test_help_prose_is_reflowed_and_examples_keep_their_lines():
    from simulator.cli import _reflow

    text = """Summary line.

    First paragraph that the source
    broke over two lines.

    Example:

        simreplay run a.parquet
        simreplay run b.parquet
    """
    assert _reflow(text).split("\n\n") == [
        "Summary line.",
        "First paragraph that the source broke over two lines.",
        "Example:",
        "    simreplay run a.parquet\n    simreplay run b.parquet",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "plan", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "(assuming more replicas never hurt)" in out.stdout


def test_ctrl_c_while_the_command_line_is_imported_exits_130_without_a_traceback():
    """The console script and ``python -m simulator`` start from ``simulator._entry``; a
    Ctrl-C during the second it takes to import the command line (made certain here by an
    import hook) printed a KeyboardInterrupt traceback."""
    out = _signalled_while_importing("raise KeyboardInterrupt")
    assert (out.returncode, out.stderr, out.stdout) == (130, "interrupted\n", "")
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["simreplay"] == "simulator._entry:entry"


def test_sigterm_while_the_command_line_is_imported_exits_143_saying_so():
    """A QA pass: SIGTERM in the first ~0.3 s of `sweep` or `plan` (while the command line
    is imported, before its handler is set) ended the process with 143 and no line, where
    Ctrl-C then printed 'interrupted'. The import hook sends it at a fixed point."""
    out = _signalled_while_importing("os.kill(os.getpid(), signal.SIGTERM)")
    assert (out.returncode, out.stderr, out.stdout) == (143, "terminated\n", "")


def _signalled_while_importing(action: str) -> subprocess.CompletedProcess:
    """``simreplay models list`` run with an import hook doing ``action`` (one statement)
    when ``simulator.cli.sweep`` is imported, i.e. while the command line loads."""
    code = (
        "import os, runpy, signal, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'simulator.cli.sweep':\n"
        f"            {action}\n"
        "sys.meta_path.insert(0, Hook())\n"
        "sys.argv = ['simreplay', 'models', 'list']\n"
        "runpy.run_module('simulator', run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def _commands(command, path=()):
    """Every (path, click command) under ``command``, groups included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_shows_every_option_help_with_its_brackets():
    """typer renders help text as rich markup, which swallows ``[word]``: ``--spec`` read
    "TOML spec:  axes and/or []" and ``--backend`` "(needs simreplay)". Every bracketed
    part of an option's help must reach ``--help`` as written."""
    import re

    import typer.main
    from typer.testing import CliRunner

    from simulator.cli import app

    root = typer.main.get_command(app)
    runner = CliRunner()
    checked = 0
    for path, command in _commands(root):
        shown = runner.invoke(app, [*path, "--help"], terminal_width=1000, env={"COLUMNS": "1000"})
        assert shown.exit_code == 0, shown.output
        text = " ".join(shown.output.split())
        for param in command.params:
            for part in re.findall(
                r"\[[^\]\s]*\]+", (getattr(param, "help", None) or "").replace("\\[", "[")
            ):
                checked += 1
                assert part in text, f"{' '.join(path)} {param.opts}: {part!r} missing from --help"
    assert checked >= 3


def test_the_readmes_python_api_example_runs():
    """The README's Python API block, run as written from the repository root."""
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("### Python API", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    code += "\nassert custom.summary['num_completed'] == result.summary['num_completed']\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMREPLAY_")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 5  # the p99 line and the grid's four
