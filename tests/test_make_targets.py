"""The two commands (make run, make test) and the scripts behind them: cheap,
real checks that need no server started."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(
    [*ROOT.glob("scripts/*.sh"), *ROOT.glob("celery_worker/*.sh"), ROOT / ".ci" / "run"],
)


def make_dry_run(target: str) -> str:
    result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_prepares_everything_then_starts_the_processes():
    commands = make_dry_run("run")
    steps = [
        "scripts/ensure_system_packages.sh",
        "scripts/ensure_services.sh",
        "manage.py create_database",
        "manage.py migrate --noinput",
        "manage.py compilemessages",
        "manage.py collectstatic",
        "manage.py seed_demo",
        "scripts/run_all.sh",
    ]
    positions = [commands.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=False))
    assert commands.index("migrate --noinput") < commands.index("seed_demo") < commands.index("run_all.sh")


def test_make_test_installs_chromium_checks_the_servers_and_runs_pytest():
    commands = make_dry_run("test")
    assert "scripts/ensure_system_packages.sh --browser" in commands
    assert "scripts/ensure_services.sh" in commands
    assert re.search(r"DJANGO_SETTINGS_MODULE=cardshop\.settings\.test \S+ -m pytest", commands)


def test_ci_runs_make_test():
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_script_is_executable_bash_without_syntax_errors(script):
    assert os.access(script, os.X_OK), f"{script} is not executable"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def services_check(**environment) -> subprocess.CompletedProcess:
    # 127.0.0.2 is loopback but not "local" to the script, so it reports
    # instead of trying to start a server; port 1 refuses at once.
    return subprocess.run(
        ["scripts/ensure_services.sh"],
        cwd=ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ensure_services_names_the_unreachable_database():
    result = services_check(DATABASE_URL="mysql://root:@127.0.0.2:1/cardshop")
    assert result.returncode == 1
    assert "MariaDB is not reachable at 127.0.0.2:1 (DATABASE_URL)" in result.stderr


def test_ensure_services_names_the_unreachable_redis():
    result = services_check(REDIS_URL="redis://127.0.0.2:1/0")
    assert result.returncode == 1
    assert "Redis is not reachable at 127.0.0.2:1 (REDIS_URL)" in result.stderr


def test_ensure_services_passes_when_both_servers_answer():
    result = services_check()
    assert result.returncode == 0, result.stderr
    assert "are reachable" in result.stdout


def lint_in_copy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    """`make lint` on a copy holding one module, with the project's rules and tools."""
    for name in ("Makefile", "pyproject.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    if not (tmp_path / ".venv").exists():
        (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "module.py").write_text(source)
    # -o: the virtualenv (and the system packages under it) are taken as they
    # are, never rebuilt from the copy.
    return subprocess.run(
        ["make", "-o", ".venv/.installed", "-o", "system-deps", "lint"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_lint_fails_on_a_lint_error_and_passes_clean_code(tmp_path):
    unused_import = lint_in_copy(tmp_path, "import os\n")
    assert unused_import.returncode != 0
    assert "F401" in unused_import.stdout
    assert lint_in_copy(tmp_path, "import os\n\nprint(os.sep)\n").returncode == 0


def test_make_lint_fails_on_unformatted_code(tmp_path):
    result = lint_in_copy(tmp_path, "print( 'x' )\n")
    assert result.returncode != 0
    assert "1 file would be reformatted" in result.stdout


def test_pre_commit_config_is_valid_and_its_local_hooks_exist():
    config = ROOT / ".pre-commit-config.yaml"
    result = subprocess.run(
        [ROOT / ".venv" / "bin" / "pre-commit", "validate-config", config], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    entries = re.findall(r"^\s+entry: (\S+)", config.read_text(), re.M)
    assert len(entries) >= 9
    for entry in entries:
        assert (ROOT / entry).exists(), f"{entry} is not installed: is it in requirements-dev.in?"
