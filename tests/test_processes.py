"""seqguard.processes.supervisor: the one way servers are started (tests, load tests, tritonserver, the service's
local Triton). A child must not outlive its parent, and a child that dies while starting says why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from seqguard.processes.supervisor import ChildProcess, ProcessError, free_port, http_status, tcp_open
from tests.support import REPO

_PARENT = """
import sys, time
from seqguard.processes.supervisor import ChildProcess
child = ChildProcess([sys.executable, "-c", "import time; time.sleep(600)"], sys.argv[1]).start()
print(child.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, limit_s: float = 30.0) -> bool:
    # A bound on waiting, not a timing assertion: the kernel signals at once, the child exits when scheduled.
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_child_dies_with_its_parent_even_when_the_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path / "child.log")], stdout=subprocess.PIPE,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line.strip().isdigit(), f"the parent did not start its child: {line!r}"
        child_pid = int(line)
        assert not _gone(child_pid)
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs: only the parent-death signal can stop the child
        parent.wait(timeout=30)
        assert _wait_gone(child_pid), f"child {child_pid} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_without_the_parent_death_signal_the_child_survives(tmp_path: Path) -> None:
    """The control for the test above: the child's end is the signal's doing, not the parent's exit as such."""
    code = _PARENT.replace('sys.argv[1])', 'sys.argv[1], die_with_parent=False)')
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "child.log")], stdout=subprocess.PIPE,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    child_pid = int(parent.stdout.readline()) if parent.stdout else 0
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        time.sleep(1.0)
        assert not _gone(child_pid)
    finally:
        os.killpg(child_pid, signal.SIGKILL)
        _wait_gone(child_pid)


def test_a_child_that_exits_while_starting_reports_its_exit_code_and_log(tmp_path: Path) -> None:
    child = ChildProcess([sys.executable, "-c", "print('no model repository here'); raise SystemExit(3)"],
                         tmp_path / "server.log").start()
    with pytest.raises(ProcessError, match=r"exited with 3 before it was ready(.|\n)*no model repository here"):
        child.wait_ready(lambda: False, timeout=60)
    assert not child.alive()


def test_stop_takes_down_the_whole_process_group(tmp_path: Path) -> None:
    # A shell that starts a grandchild and waits: SIGTERM to the group reaches both.
    child = ChildProcess(["sh", "-c", "sleep 600 & echo $!; wait"], tmp_path / "sh.log").start()
    deadline = time.monotonic() + 30
    while not (tmp_path / "sh.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int((tmp_path / "sh.log").read_text().split()[0])
    child.stop(timeout=10)
    assert not child.alive() and _wait_gone(grandchild)


def test_free_port_is_free_and_probes_see_nothing_there() -> None:
    port = free_port()
    assert not tcp_open(port)
    assert http_status(f"http://127.0.0.1:{port}/", timeout=0.5) is None
