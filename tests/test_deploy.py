"""deploy/serve_class.sh and deploy/nginx.conf: a private state folder, a stop that signals only its own replicas,
limits per client, and no upstream address in the answers. nginx itself is not needed: nothing here starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "deploy" / "serve_class.sh"
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the script reads /proc")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    pointer = ROOT / "deploy" / ".run"
    assert not pointer.exists(), "a class is being served from this checkout; stop it before the tests"
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NGINX": "false", "PYTHON": "false", **env})


def _state(tmp_path: Path, mode: int = 0o700) -> Path:
    run = tmp_path / "state"
    run.mkdir(mode=mode)
    run.chmod(mode)
    return run


def test_start_refuses_a_state_folder_that_exists(tmp_path: Path) -> None:
    run = _state(tmp_path)
    done = _run("start", "2", RUN=str(run))
    assert done.returncode == 1 and "already exists" in done.stderr
    assert list(run.iterdir()) == []  # nothing written into it
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    done = _run("start", "2", RUN=str(link))
    assert done.returncode == 1 and "already exists" in done.stderr and not (tmp_path / "elsewhere").exists()


def test_start_checks_the_number_of_replicas(tmp_path: Path) -> None:
    done = _run("start", "3; rm -rf /", RUN=str(tmp_path / "new"))
    assert done.returncode == 1 and "number of replicas" in done.stderr and not (tmp_path / "new").exists()


@pytest.mark.parametrize("why", ["link", "shared"])
def test_stop_touches_only_a_private_folder(tmp_path: Path, why: str) -> None:
    if why == "link":
        target = _state(tmp_path)
        run = tmp_path / "run"
        run.symlink_to(target)
    else:
        run = _state(tmp_path, 0o777)
    (run if why == "shared" else target).joinpath("replicas.pid").write_text("1 8601\n")
    done = _run("stop", RUN=str(run))
    assert done.returncode == 1 and "not touching it" in done.stderr


def test_stop_signals_only_the_replicas_it_started(tmp_path: Path) -> None:
    """A pid file naming another process (here a sleep, as if the pid were reused or the file doctored) leaves it
    running."""
    run = _state(tmp_path)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (run / "replicas.pid").write_text(f"{other.pid} 8601\n1 8602\n")
        done = _run("stop", RUN=str(run))
        assert done.returncode == 0, done.stderr
        assert "left alone" in done.stderr and other.poll() is None  # still running
        assert not (run / "replicas.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_nginx_limits_clients_and_names_no_upstream() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "limit_conn per_address" in conf and "limit_req zone=requests" in conf
    assert "upstream_addr" not in conf and "X-Explorer-Replica" not in conf and "server_tokens off" in conf
