"""The bubblewrap command line that confines one worker.

Why bubblewrap (Debian's ``bubblewrap``, what Flatpak uses) and not our own mount code: it is
small, audited and does the fiddly parts right (pivot_root into a fresh tmpfs, a procfs for the
new PID namespace, a minimal ``/dev``, ``--die-with-parent``). What a worker sees:

* a read-only root built from scratch: ``/usr`` and the merged-usr links, a few files of
  ``/etc``, the Python prefixes, site-packages, the package itself and ``--worker-bind`` paths,
  all read-only; nothing else of the host (no home, no store, no ``/run``, no ``/var``);
* its bundle folder read-only at ``/bundle`` (its working folder): the server fills that folder
  from outside, and the worker can never write there;
* one private, size-capped tmpfs for ``/tmp`` (``/var/tmp`` links to it) and another for
  ``/dev/shm``: its only writable paths, gone with it;
* new PID, IPC, UTS and cgroup namespaces, and a network namespace with only loopback unless
  ``--worker-network``: no other process is visible, so none can be signalled or traced;
* as root: bubblewrap runs as root and ``setpriv`` drops the worker to its own uid before Python
  starts, with no capabilities left; as a normal user: an unprivileged user namespace (nested
  user namespaces disabled), so the worker keeps no capability over anything outside.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import easytensor_jupyter

__all__ = ["BUNDLE", "ETC_FILES", "find", "needed_paths", "probe", "sandbox_command"]

BUNDLE = "/bundle"
ETC_FILES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
)
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def find() -> str | None:
    return shutil.which("bwrap")


def _covered(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def needed_paths(extra: Sequence[str] = ()) -> list[str]:
    """Host folders a worker must see read-only: the interpreter, its libraries, the package.

    Not the whole of ``sys.path``: its first entry is often the server's working folder
    (``python -m``), and an editable install adds its project root; the package folder itself
    is bound instead, so the rest of the project stays out of view.
    """
    package = str(Path(easytensor_jupyter.__file__).resolve().parent)
    wanted = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    wanted += [str(Path(sys.executable).resolve().parent), package, *extra]
    wanted += site.getsitepackages()
    if site.ENABLE_USER_SITE and site.getusersitepackages() in sys.path:
        wanted.append(site.getusersitepackages())
    wanted += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    found: list[str] = []
    for raw in sorted({os.path.realpath(p) for p in wanted}, key=len):
        if raw != "/" and Path(raw).is_dir() and not _covered(raw, [*found, *_SYSTEM]):
            found.append(raw)
    return found


def _parents(paths: Iterable[str]) -> list[str]:
    """Every folder above a bind target, so each can be made 0755 (bubblewrap makes 0700)."""
    out = {str(parent) for path in paths for parent in Path(path).parents if str(parent) != "/"}
    return sorted(out, key=lambda p: (p.count("/"), p))


def _system_args() -> tuple[list[str], list[str]]:
    """Binds of the system folders, and the ``/etc`` files to bind (read-only, as they are)."""
    args: list[str] = []
    for path in map(Path, _SYSTEM):
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    etc = [str(Path("/etc", name)) for name in ETC_FILES if Path("/etc", name).exists()]
    return args, etc


def _device_args(device: str) -> list[str]:
    """GPU nodes and the driver's ``/sys`` and ``/proc`` files, only for a CUDA device."""
    if not device.startswith("cuda"):
        return []
    args: list[str] = []
    for node in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind", str(node), str(node)]
    args += ["--ro-bind-try", "/sys", "/sys"]
    args += ["--ro-bind-try", "/proc/driver/nvidia", "/proc/driver/nvidia"]
    return args


def sandbox_command(
    command: Sequence[str],
    *,
    bwrap: str,
    bundle: Path,
    binds: Sequence[str],
    tmp_bytes: int,
    network: bool,
    device: str = "cpu",
    uid: int | None = None,
    setpriv: str | None = None,
) -> list[str]:
    """``bwrap ... -- [setpriv ...] command``: ``uid`` set means a root server dropping to it."""
    root = os.geteuid() == 0
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc"]
    args += ["--unshare-uts", "--hostname", "easytensor", "--unshare-cgroup-try"]
    if not network:
        args.append("--unshare-net")
    if root:
        caps = ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"] if uid is not None and setpriv else []
        args += ["--cap-drop", "ALL"] + [a for cap in caps for a in ("--cap-add", cap)]
    else:
        args += ["--unshare-user", "--disable-userns"]
    system, etc = _system_args()
    size = str(max(1 << 20, tmp_bytes))
    args += [*system, "--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    for folder in _parents([*etc, *binds, BUNDLE]):
        if folder != "/tmp" and not _covered(folder, _SYSTEM):
            args += ["--perms", "0755", "--dir", folder]
    for path in [*etc, *binds]:
        args += ["--ro-bind", path, path]
    args += ["--ro-bind", str(bundle), BUNDLE, "--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    args += _device_args(device)
    args += ["--perms", "0755", "--dir", "/var", "--symlink", "/tmp", "/var/tmp"]
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", BUNDLE, "--"]
    if root and uid is not None and setpriv:
        args += [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return [*args, *command]


def probe(command: Sequence[str], env: dict[str, str]) -> str | None:
    """Run a trivial sandbox once; None if it worked, else bubblewrap's own complaint."""
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    text = done.stderr.decode(errors="replace").strip().splitlines()
    return (text[-1] if text else f"exit code {done.returncode}").removeprefix("bwrap: ")
