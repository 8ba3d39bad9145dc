"""testing/processes.py, the harness the suite and bench/ start their servers
with: a free port, a child in its own process group, waits that report its log,
stop and kill that reach the whole group. And the rule that keeps it out of the
app: nothing the app imports depends on testing/ or bench/."""

import ast
import signal
import sys
from pathlib import Path

import pytest

from testing.processes import ROOT, ChildProcess, ProcessFailed, free_port, port_listens, wait_until


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for its parent counts as exited)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_free_port_is_free():
    port = free_port()
    assert not port_listens(port)


def test_a_server_is_waited_for_and_stopped(tmp_path):
    port = free_port()
    server = ChildProcess("http", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path)
    with server:
        server.wait_for_url(f"http://127.0.0.1:{port}/", timeout=20)
        assert port_listens(port)
    assert not server.alive()
    assert not port_listens(port)


def test_a_child_that_dies_at_start_fails_the_wait_with_its_log():
    child = ChildProcess("dies", python("print('the reason it died', flush=True); raise SystemExit(3)")).start()
    with pytest.raises(ProcessFailed, match=r"(?s)dies exited \(3\).*the reason it died"):
        child.wait_for_port(free_port(), timeout=20)


def test_a_child_that_never_gets_ready_fails_the_wait_in_time_with_its_log():
    child = ChildProcess("slow", python("import time; print('still starting', flush=True); time.sleep(60)")).start()
    try:
        child.wait_for_log("still starting", timeout=20)
        with pytest.raises(ProcessFailed, match=r"(?s)no listener on port \d+ after 1s.*still starting"):
            child.wait_for_port(free_port(), timeout=1)
    finally:
        child.stop()


def test_a_child_that_never_gets_ready_is_not_left_running():
    """A failed wait kills the child: a worker that never got ready (its broker
    down) would otherwise stay, reconnect later and take a later run's tasks."""
    child = ChildProcess("stuck", python("import time; time.sleep(60)")).start()
    with pytest.raises(ProcessFailed):
        child.wait_for_port(free_port(), timeout=1)
    assert not child.alive()


def test_stop_kills_a_child_that_ignores_sigterm():
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    child = ChildProcess("stubborn", python(code)).start().wait_for_log("ready", timeout=20)
    child.stop(timeout=1)
    assert child.popen.returncode == -signal.SIGKILL


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_stop_and_kill_reach_the_whole_process_group(end):
    code = (
        "import subprocess, sys, time;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('grandchild', child.pid, flush=True); time.sleep(60)"
    )
    parent = ChildProcess("parent", python(code)).start().wait_for_log("grandchild", timeout=20)
    grandchild = int(parent.log().split()[-1])
    assert not gone(grandchild)
    getattr(parent, end)()
    assert not parent.alive()
    wait_until(lambda: gone(grandchild), timeout=5, message=f"grandchild {grandchild} to exit")


def test_wait_until_says_what_it_waited_for():
    with pytest.raises(AssertionError, match="timed out after 0.3s waiting for the moon"):
        wait_until(lambda: False, timeout=0.3, message="the moon")


APP_CODE = [*ROOT.glob("apps/**/*.py"), *ROOT.glob("cardshop/**/*.py"), *ROOT.glob("celery_worker/**/*.py")]
APP_CODE += [ROOT / "manage.py", ROOT / "gunicorn.conf.py"]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_app_never_imports_test_support_the_benchmark_or_the_chaos_suite():
    app_code = [path for path in APP_CODE if "tests" not in path.relative_to(ROOT).parts]
    assert len(app_code) > 50, "the app's modules were not found"
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] in ("testing", "bench", "chaos")
        )
        for path in app_code
    }
    assert {path: names for path, names in offenders.items() if names} == {}
