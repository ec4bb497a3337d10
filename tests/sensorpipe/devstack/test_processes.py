"""Service processes with and without a launcher: under ``py-spy record`` (which does
not forward signals) the service is the launcher's child, signals reach it, the
launcher ends with it and writes its profile; without one nothing changes."""

from __future__ import annotations

import sys
from pathlib import Path

from sensorpipe.devstack.processes import ServiceProcess, child_pids

REPO_ROOT = Path(__file__).resolve().parents[3]
MODULE = "tests.sensorpipe.devstack.busy_service"
# The child must import this tree, not whichever one the venv installed.
ENV = {"PYTHONPATH": f"{REPO_ROOT / 'shared'}:{REPO_ROOT}"}
PY_SPY = str(Path(sys.executable).parent / "py-spy")


def py_spy(out: Path) -> list[str]:
    return [PY_SPY, "record", "--output", str(out), "--format", "raw", "--rate", "100", "--"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended, only not been reaped yet


def test_without_a_launcher_the_service_is_the_process(tmp_path: Path) -> None:
    service = ServiceProcess(MODULE, ENV, tmp_path).start()
    assert service.process is not None
    assert service.service_pid == service.process.pid
    assert service.terminate() == 0


def test_under_py_spy_sigterm_reaches_the_service_and_the_profile_is_written(
    tmp_path: Path,
) -> None:
    out = tmp_path / "profile.txt"
    service = ServiceProcess(MODULE, ENV, tmp_path, launcher=py_spy(out)).start()
    assert service.process is not None
    launcher, pid = service.process.pid, service.service_pid
    assert pid != launcher
    assert child_pids(launcher) == [pid]
    assert MODULE in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert service.terminate() == 0, service.log_tail()
    assert not alive(pid)
    # py-spy's collapsed stacks: the start-up's CPU was sampled in burn.
    assert "burn (tests/sensorpipe/devstack/busy_service.py:" in out.read_text()


def test_under_py_spy_kill_ends_the_service_and_its_launcher(tmp_path: Path) -> None:
    service = ServiceProcess(
        MODULE, ENV, tmp_path, launcher=py_spy(tmp_path / "profile.txt")
    ).start()
    assert service.process is not None
    pid = service.service_pid
    service.kill()
    assert service.process.returncode is not None
    assert not alive(pid)
