"""The hostile model of the sandbox tests: untrusted code that tries one forbidden thing per
query (``{"do": ..., "arg": ...}``) and answers what happened, so each denial is checked where
it matters, in model code running in a real worker."""

from __future__ import annotations

import textwrap

__all__ = ["PROBE_SOURCE"]

PROBE_SOURCE = textwrap.dedent(
    '''
    """Untrusted model code that tries things and says what happened."""
    import errno
    import glob
    import os
    import resource
    import signal
    import socket
    import struct
    import sys
    import threading
    import time

    import torch
    from torch import nn

    _LEAK = []


    def _err(exc):
        return errno.errorcode.get(exc.errno, str(exc))


    def _attempt(action):
        try:
            return {"ok": True, "value": action()}
        except OSError as exc:
            return {"ok": False, "error": _err(exc)}


    def _open_many():
        handles = []
        try:
            while len(handles) < 100000:
                handles.append(open(os.devnull))
        except OSError as exc:
            return {"opened": len(handles), "error": _err(exc)}
        finally:
            for fh in handles:
                fh.close()
        return {"opened": len(handles), "error": None}


    def _leak(mb):
        # Stops at 2 GB, so that a missing memory limit fails the test instead of the machine.
        while len(_LEAK) * mb < 2048:
            _LEAK.append(bytearray(b"x" * (mb << 20)))
            time.sleep(0.01)
        return {"leaked_mb": len(_LEAK) * mb}


    def _spin():
        while True:
            pass


    def _write(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write("print('owned')\\n")
        return path


    def _plant(target, server):
        """Links to ``target`` in every worker folder in reach: another worker's through
        /proc/PID/cwd, the server's run folder in the temp folder, and our own. (Only those
        of the server under test: where the attack works, no other folder gets a link.)"""
        mine = f"easytensor-worker-{server}-"
        folders = {os.getcwd()}
        for cwd in glob.glob("/proc/[0-9]*/cwd"):
            try:
                folder = os.readlink(cwd)
            except OSError:
                continue
            if mine in folder or folder == "/bundle":
                folders.add(cwd)
        folders.update(glob.glob(f"/tmp/{mine}*/w-*"))
        planted = []
        for folder in sorted(folders):
            for name in ("model.py", "manifest.json", "weights.safetensors", "x.py"):
                try:
                    os.symlink(target, os.path.join(folder, name))
                    planted.append(os.path.join(folder, name))
                except OSError:
                    pass
        return planted


    def _peek(pids):
        seen = {}
        for pid in pids:
            seen[str(pid)] = {
                "mem": _attempt(lambda: open(f"/proc/{pid}/mem", "r+b").close()),
                "cwd": _attempt(lambda: os.listdir(f"/proc/{pid}/cwd")),
                "environ": _attempt(lambda: len(open(f"/proc/{pid}/environ", "rb").read())),
            }
        visible = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        return {"seen": seen, "visible": visible}


    def _kill(pids):
        done = {}
        for pid in pids:
            target = os.getppid() if pid == "ppid" else int(pid)
            done[str(pid)] = _attempt(lambda: os.kill(target, signal.SIGKILL))
        return done


    def _tamper():
        done = {}
        for name in sorted(os.listdir(".")):
            done[name] = {
                "chmod": _attempt(lambda: os.chmod(name, 0o666)),
                "write": _attempt(lambda: open(name, "r+b").write(b"X")),
            }
        return done


    def _writable(folders):
        found = []
        for folder in folders:
            path = os.path.join(folder, f"probe-{os.getpid()}")
            try:
                with open(path, "w") as fh:
                    fh.write("x")
                os.unlink(path)
                found.append(folder)
            except OSError:
                pass
        return found


    def _frame(mb):
        """Write a frame of ``mb`` MB on the socket to the server ourselves."""
        sock = socket.socket(fileno=int(sys.argv[sys.argv.index("--fd") + 1]))
        sock.sendall(struct.pack(">I", mb << 20))
        chunk = b"\\0" * (1 << 20)
        for _ in range(mb):
            sock.sendall(chunk)
        return "sent"


    def _daemon(marker):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", str(marker)])
            os._exit(0)
        os.wait()
        return "started"


    def _forks(count):
        children, error = [], None
        try:
            for _ in range(count):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            error = _err(exc)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return {"forked": len(children), "error": error}


    def _fork_hog(mb):
        if os.fork() == 0:
            held = []
            while len(held) * 16 < mb:
                held.append(b"x" * (16 << 20))
                time.sleep(0.01)
            time.sleep(60)
            os._exit(0)
        time.sleep(20)
        return {"child_survived": True}


    def _cores(seconds, count):
        """``count`` busy processes for ``seconds``: how many cores they got together."""
        started = time.monotonic()
        children = []
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                while time.monotonic() - started < seconds:
                    pass
                os._exit(0)
            children.append(pid)
        cpu = 0.0
        for pid in children:
            _, _, usage = os.wait4(pid, 0)
            cpu += usage.ru_utime + usage.ru_stime
        return cpu / (time.monotonic() - started)


    def _fill(path, mb):
        written = 0
        try:
            with open(path, "wb") as fh:
                for _ in range(mb):
                    fh.write(b"x" * (1 << 20))
                    fh.flush()
                    written += 1
        except OSError as exc:
            return {"written_mb": written, "error": _err(exc)}
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        return {"written_mb": written, "error": None}


    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def predict_single(self, x):
            kind, arg = x["do"], x.get("arg")
            if kind == "read":
                return _attempt(lambda: len(open(arg, "rb").read(64)))
            if kind == "list":
                return _attempt(lambda: sorted(os.listdir(arg)))
            if kind == "glob":
                return sorted(glob.glob(arg))
            if kind == "connect":
                return _attempt(lambda: socket.create_connection(tuple(arg), timeout=3).close())
            if kind == "ids":
                return {
                    "uid": os.getuid(),
                    "gid": os.getgid(),
                    "cwd": os.getcwd(),
                    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                    "core": resource.getrlimit(resource.RLIMIT_CORE)[1],
                    "cpu": resource.getrlimit(resource.RLIMIT_CPU)[1],
                }
            if kind == "open_many":
                return _open_many()
            if kind == "leak":
                return _leak(int(arg))
            if kind == "spin":
                return _spin()
            if kind == "env":
                return dict(os.environ)
            if kind == "write":
                return _attempt(lambda: _write(arg))
            if kind == "writable":
                return _writable(arg)
            if kind == "plant":
                return _plant(*arg)
            if kind == "peek":
                return _peek(arg)
            if kind == "kill":
                return _kill(arg)
            if kind == "tamper":
                return _tamper()
            if kind == "frame":
                return _frame(int(arg))
            if kind == "big":
                return "x" * (int(arg) << 20)
            if kind == "daemon":
                return _daemon(arg)
            if kind == "exit":
                os._exit(3)
            if kind == "forks":
                return _forks(int(arg))
            if kind == "fork_hog":
                return _fork_hog(int(arg))
            if kind == "burn":
                threading.Thread(target=_spin, daemon=True).start()
                return "burning"
            if kind == "cores":
                return _cores(float(arg[0]), int(arg[1]))
            if kind == "fill":
                return _fill(arg[0], int(arg[1]))
            return {"echo": x}
    '''
)
