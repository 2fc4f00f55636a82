"""Run a script under torchrun from a test and fail with its output when it fails."""
import os
import socket
import subprocess
import sys


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str, nproc: int, args: list[str] = (), timeout: float = 600,
             env: dict[str, str] | None = None) -> str:
    """Launch `script` (a path, or `-m module`) on `nproc` local processes; return its output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           f"--master-port={_free_port()}", *script.split(), *map(str, args)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"torchrun {' '.join(cmd[4:])} failed ({proc.returncode}):\n{output[-6000:]}")
    return output
