"""Memory budgets for benchmarks: a cgroup (v1 or v2) that a PostgreSQL server runs inside, and a minimal server
runner that starts the server from a process already in that group, so every server process inherits it.

The budget covers the server's whole memory: shared_buffers (shared memory is charged to the group that first
touches it), the backends' private memory and the page cache of the files the server reads. Needs root to
create the group; the server itself runs as the unprivileged `pgmrl` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import subprocess
import time
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/memory")
V2_ROOT = Path("/sys/fs/cgroup")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class MemoryGroup:
    """A memory cgroup named `name`: v1 (memory.limit_in_bytes) where the machine has the v1 memory controller,
    else v2 (memory.max). Use MemoryGroup.probe() first: it says why a group cannot be made."""

    def __init__(self, name: str):
        self.version, why = self.probe()
        if self.version is None:
            raise RuntimeError(why)
        self.path = (V1_ROOT if self.version == 1 else V2_ROOT) / name
        self.path.mkdir(exist_ok=True)

    @staticmethod
    def probe() -> tuple[int | None, str]:
        if os.geteuid() != 0:
            return None, "not running as root: a memory cgroup cannot be created"
        if (V1_ROOT / "memory.limit_in_bytes").exists() or (V1_ROOT / "tasks").exists():
            return (1, "cgroup v1") if os.access(V1_ROOT, os.W_OK) else (None, f"{V1_ROOT} is not writable")
        controllers = _read(V2_ROOT / "cgroup.controllers").split()
        if "memory" in controllers:
            if "memory" not in _read(V2_ROOT / "cgroup.subtree_control").split():
                try:
                    _write(V2_ROOT / "cgroup.subtree_control", "+memory")
                except OSError as exc:
                    return None, f"cgroup v2 without the memory controller delegated ({exc})"
            return 2, "cgroup v2"
        return None, "no cgroup memory controller (neither v1 /sys/fs/cgroup/memory nor v2 memory.max)"

    # -- the limit ---------------------------------------------------------------------------------------
    def set_limit(self, nbytes: int | None) -> None:
        if self.version == 1:
            _write(self.path / "memory.limit_in_bytes", "-1" if nbytes is None else str(nbytes))
        else:
            _write(self.path / "memory.max", "max" if nbytes is None else str(nbytes))

    def tasks(self) -> list[int]:
        return [int(x) for x in _read(self.path / ("tasks" if self.version == 1 else "cgroup.procs")).split()]

    def enter(self) -> None:
        """Moves the calling process into the group (its children inherit it)."""
        _write(self.path / ("tasks" if self.version == 1 else "cgroup.procs"), str(os.getpid()))

    def drop_cache(self) -> None:
        """Frees the page cache charged to the group (call with no process inside): v1 memory.force_empty,
        v2 memory.reclaim."""
        try:
            if self.version == 1:
                _write(self.path / "memory.force_empty", "0")
            elif (self.path / "memory.reclaim").exists():
                _write(self.path / "memory.reclaim", str(1 << 40))
        except OSError:
            pass  # reclaim reports EAGAIN when it could not free everything; the rest is cold anyway

    # -- what happened inside ----------------------------------------------------------------------------
    def usage(self) -> int:
        return int(_read(self.path / ("memory.usage_in_bytes" if self.version == 1 else "memory.current")) or 0)

    def reset_peak(self) -> None:
        try:
            if self.version == 1:
                _write(self.path / "memory.max_usage_in_bytes", "0")
                _write(self.path / "memory.failcnt", "0")
            else:
                _write(self.path / "memory.peak", "0")
        except OSError:
            pass

    def peak(self) -> int:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return int(_read(self.path / name) or 0)

    def stat(self) -> dict:
        """The group's memory now, in bytes: anonymous (rss/anon), page cache (cache/file), shared memory."""
        keys = {1: ("rss", "cache", "shmem", "mapped_file"), 2: ("anon", "file", "shmem", "file_mapped")}[self.version]
        out = {}
        for line in _read(self.path / "memory.stat").splitlines():
            key, _, value = line.partition(" ")
            if key in keys:
                out[key] = int(value)
        return out

    def oom_kills(self) -> int:
        text = _read(self.path / ("memory.oom_control" if self.version == 1 else "memory.events"))
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """Ends what is still inside (only processes this benchmark started are in the group), then removes it."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.tasks()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            for _ in range(50):
                if not self.tasks():
                    break
                time.sleep(0.1)
        for _ in range(20):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.2)


def evict_files(root: Path) -> None:
    """Drops the page cache of every file under root (posix_fadvise DONTNEED), so that the next start is cold
    whichever group the pages were charged to."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


class PgServer:
    """One PostgreSQL data directory run by the binaries in `bindir`, listening on a Unix socket only."""

    def __init__(self, bindir: Path, data_dir: Path, label: str, user: str = "pgmrl"):
        self.bin = Path(bindir)
        self.data_dir = Path(data_dir)
        self.label = label
        self.pw = pwd.getpwnam(user) if os.geteuid() == 0 else None
        self.running = False

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port=5432"

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        return env

    def _preexec(self, group: MemoryGroup | None):
        pw = self.pw

        def fn():
            if group is not None:
                group.enter()  # still root here: join the group, then become the server user
            if pw is not None:
                os.setgroups([])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        return fn

    def _run(self, args: list[str], group: MemoryGroup | None = None, timeout: float = 300) -> None:
        res = subprocess.run([str(self.bin / args[0])] + args[1:], capture_output=True, text=True, cwd="/",
                             env=self._env(), preexec_fn=self._preexec(group), timeout=timeout)
        if res.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"{self.label}: {' '.join(args[:2])} failed: {res.stderr.strip()}\n{tail}")

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700)
        if self.pw is not None:
            os.chown(self.socket_dir, self.pw.pw_uid, self.pw.pw_gid)
            os.chown(self.data_dir, self.pw.pw_uid, self.pw.pw_gid)
        self._run(["initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                   "--locale=C.UTF-8", "--no-instructions"])

    def start(self, settings: dict[str, str], group: MemoryGroup | None) -> None:
        opts = f"-c listen_addresses='' -k {self.socket_dir} -p 5432 " + " ".join(
            f"-c {k}={shlex.quote(str(v))}" for k, v in settings.items())
        self.running = True  # before: an interrupted start may leave a running server behind
        self._run(["pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", "120", "-l",
                   str(self.data_dir / "server.log"), "-o", opts], group)

    def stop(self, mode: str = "fast", timeout: int = 30) -> None:
        """Stops the server if it runs (also one whose start was interrupted); immediate when a fast shutdown
        takes more than `timeout` s (a postmaster told to stop while it reinitialises after a crashed backend
        can wait for ever)."""
        if not (self.data_dir / "postmaster.pid").exists():  # not started, stopped, or it died
            self.running = False
            return
        try:
            self._run(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(timeout)], timeout=timeout + 30)
        except (RuntimeError, subprocess.TimeoutExpired):
            if mode != "immediate" and (self.data_dir / "postmaster.pid").exists():
                self._run(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "60"])
        self.running = False
