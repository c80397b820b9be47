"""SSH plumbing: keys, reachability probes and ControlPersist masters."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from controller.errors import AddressInUseError, PrerequisiteError


def generate_key(path: Path, comment: str) -> None:
    """Create an ed25519 key pair at ``path`` unless one is there already."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PrerequisiteError(f"ssh-keygen failed for {path}: {result.stderr.strip()}")


def public_key(path: Path) -> str:
    """The public half of the key at ``path``, without its comment."""
    kind, body, *_ = Path(f"{path}.pub").read_text().split()
    return f"{kind} {body}"


def probe(address: str, port: int, timeout: float = 1.0) -> bool:
    """True when an SSH server answers on ``address:port`` with its banner."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def ensure_free(address: str, port: int) -> None:
    """Raise ``AddressInUseError`` when ``address:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise AddressInUseError(
                f"{address}:{port} is already in use ({exc.strerror})",
                hint="stop what holds it, or choose other addresses with --base-address",
            ) from exc


def close_control_masters(control_dir: Path, *, graceful: bool = False) -> int:
    """Ask every ControlPersist master with a socket in ``control_dir`` to exit, or with
    ``graceful`` to stop: it takes no new session (its socket goes at once) and exits when
    its sessions end, at once when it has none. A run that ends stops the masters it
    shares with another run still working (a monitor, a drill) without cutting that
    run's tasks short; its next ssh opens a master of its own."""
    closed = 0
    if not control_dir.is_dir():
        return 0
    for sock in sorted(control_dir.iterdir()):
        if not sock.is_socket():
            continue
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "stop" if graceful else "exit",
             "relctl-lab"],
            capture_output=True,
            check=False,
            timeout=10,
        )
        sock.unlink(missing_ok=True)
        closed += 1
    return closed
