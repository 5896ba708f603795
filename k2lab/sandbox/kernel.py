"""``SandboxKernel``: the isolated Jupyter kernel model-written code runs in.

Owns the kernel's life (start, execute with limits, interrupt, restart, shutdown) and turns every
fault into an ``ExecutionResult``: timeouts (interrupt, then restart if still busy), kernel death
(``os._exit``, segfault, CPU limit), a workspace over its quota. Isolation itself is applied by the
launcher (``k2lab.sandbox.launch``) that the kernelspec runs; this module picks the level, passes
the settings in a scrubbed environment and reports the level actually in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import zmq

from k2lab.sandbox import cgroup, leftovers
from k2lab.sandbox.base import ExecutionResult, Limits
from k2lab.sandbox.calls import LOST, KernelCalls, call_result, interrupt_note
from k2lab.sandbox.confine import ENV_PREFIX
from k2lab.sandbox.faults import describe_exit
from k2lab.sandbox.isolation import (
    ISOLATION_NOTES,
    SandboxConfig,
    data_mounts,
    resolve_level,
    scrubbed_launch_env,
)
from k2lab.sandbox.managers import (
    KERNEL_NAME,
    LocalHandle,
    ProvidedHandle,
    runs_kernels_elsewhere,
)
from k2lab.sandbox.output import OutputCollector
from k2lab.sandbox.parent import hide_parent_secrets
from k2lab.sandbox.quota import MAX_DEPTH, QuotaGuard, Usage
from k2lab.sandbox.transfer import TransferMixin

#: How often a running call checks that the kernel is alive and the workspace within its quota
#: (the quota itself is scanned by a ``QuotaGuard`` task, in a thread).
_POLL = 0.2
_POLL_REMOTE = 2.0
_START_TIMEOUT = 30.0


class SandboxError(RuntimeError):
    """The sandbox could not start (the only sandbox failure that is raised, not returned)."""


def _being_cancelled() -> bool:
    """Whether the current task itself was cancelled (not just a future it awaited)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return True if task is None or cancelling is None else bool(cancelling())


class SandboxKernel(KernelCalls, TransferMixin):
    """An isolated, resource-limited ipykernel. See the module docstring."""

    def __init__(
        self,
        *,
        isolation: str = "auto",
        network: bool = False,
        workspace: Path | None = None,
        limits: Limits | None = None,
        kernel_name: str = KERNEL_NAME,
        kernel_manager: Any = None,
        data: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.requested_isolation = isolation
        #: the user's ``--data`` paths as (real host path, /data/NAME); ValueError if missing
        self.data_mounts = data_mounts(tuple(data))
        #: The level in force after ``start()`` ("bwrap" | "process" | "remote").
        self.isolation = isolation
        #: Why the level is lower than requested ("" if it is not).
        self.isolation_reason = ""
        self.network = network
        self.limits = limits or Limits()
        self.kernel_name = kernel_name
        self._own_workspace = workspace is None
        self.workspace = Path(workspace) if workspace else Path(tempfile.mkdtemp(prefix="k2ws-"))
        ws_real = os.path.realpath(self.workspace)
        for host, _ in self.data_mounts:
            if host == ws_real or host.startswith(ws_real + "/"):
                raise ValueError(f"--data {host}: inside the sandbox's workspace (already there)")
        self._provided = kernel_manager
        self._handle: LocalHandle | ProvidedHandle | None = None
        self._kc: Any = None
        self._cgroup = ""
        self._log: IO[bytes] | None = None
        self._lock = asyncio.Lock()
        self._restarts = 0
        self._generation = 0
        #: msg_id of the call in progress, and of a cancelled call that may still be running
        self._running: str | None = None
        self._closed = False
        #: the parent's private kernel directory (connection file, log, ipc sockets), outside
        #: the workspace; see ``_private_dir``
        self._private: Path | None = None
        self._abandoned: str | None = None
        #: the workspace quota, enforced between calls too (see ``_watch_quota``)
        self._guard = QuotaGuard(
            self.writable_dirs,
            max_bytes=self.limits.workspace_size,
            max_files=self.limits.workspace_files,
        )
        self._guard_task: asyncio.Task[None] | None = None
        #: what the guard did between calls, told to the model at the next call
        self._quota_note = ""
        #: between-call breaches in a row (a writer that even a restart did not stop)
        self._quota_strikes = 0

    # -- description --------------------------------------------------------------------------
    @property
    def isolation_note(self) -> str:
        key = self.isolation
        if key == "bwrap" and self.network:
            key = "bwrap+net"
        note = ISOLATION_NOTES.get(key, f"isolation: {self.isolation}")
        if self.isolation_reason:
            note += f" ({self.isolation_reason})"
        if self.data_mounts:
            note += "; " + self.data_note_for_user()
        return note

    def data_paths(self) -> list[tuple[str, str]]:
        """(host path, the path sandbox code reads it at) for each ``--data`` path: the /data
        mount under bwrap; the real path at the process level (nothing is mounted there, and
        the code could read it anyway)."""
        if self.isolation == "bwrap":
            return list(self.data_mounts)
        return [(h, h) for h, _ in self.data_mounts]

    def data_note_for_user(self) -> str:
        if not self.data_mounts:
            return ""
        if self.isolation == "bwrap":
            shown = ", ".join(f"{h} at {i}" for h, i in self.data_mounts)
            return f"read-only data mounted: {shown}"
        if self.isolation == "remote":
            return "--data is not available on a remote kernel (nothing mounted)"
        shown = ", ".join(h for h, _ in self.data_mounts)
        return (
            f"--data at the process level mounts nothing: the code reads {shown} at its real "
            "path, and, with no confinement, the rest of your files too; it can also write there"
        )

    def data_note_for_model(self) -> str:
        """For the system prompt: where the user's data is."""
        if not self.data_mounts or self.isolation == "remote":
            return ""
        lines = ["The user made these files available to the python tool:"]
        for host, inner in self.data_paths():
            kind = "folder" if os.path.isdir(host) else "file"
            ro = " (read-only)" if self.isolation == "bwrap" else ""
            lines.append(f"- {inner}: {kind}{ro}")
        return "\n".join(lines)

    @property
    def started(self) -> bool:
        return self._kc is not None

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._kc is not None:
            return
        self._closed = False
        if self._handle is not None:  # a kernel whose last restart failed half-way
            await self.restart()
            return
        if self._provided is not None and runs_kernels_elsewhere(self._provided, self.kernel_name):
            self._handle = ProvidedHandle(self._provided, self.kernel_name)
            level = self.requested_isolation
        else:
            try:
                level, self.isolation_reason = resolve_level(self.requested_isolation)
            except (ValueError, RuntimeError) as e:
                if self._own_workspace:
                    shutil.rmtree(self.workspace, ignore_errors=True)
                raise SandboxError(str(e)) from e
            self._handle = LocalHandle(self.kernel_name, self._private_dir())
            self._cgroup = f"k2lab-{uuid.uuid4().hex[:12]}-0"
        self.workspace.mkdir(parents=True, exist_ok=True)
        if self._own_workspace:
            leftovers.mark(self.workspace)
            leftovers.sweep_once_in_background()
        cfg = SandboxConfig(
            level=level,
            network=self.network,
            workspace=str(self.workspace),
            cgroup=self._cgroup,
            limits=self.limits,
            data=self.data_mounts,
        )
        try:
            self._log = self._open_log()
            if level == "process" and not self._handle.remote:
                # same user, no PID namespace: sandbox code could read our /proc environ. Blanked
                # before any sandbox process exists, not once the kernel answers
                hide_parent_secrets()
            env = scrubbed_launch_env(cfg)
            if not self._handle.remote:
                # the launcher dies at once if this process is gone by the time it runs
                env[ENV_PREFIX + "PARENT"] = str(os.getpid())
            await self._handle.start(env, self._log)
            info = await self._connect()
        except BaseException as e:
            tail = self._log_tail()
            await self._teardown()
            if isinstance(e, asyncio.CancelledError):
                raise
            raise SandboxError(f"the sandbox kernel did not start: {e}{tail}") from e
        if self._handle.remote and info.get("level") == "process":
            # a remote manager's kernel that may run on this machine after all
            hide_parent_secrets()
        if self._handle.remote:
            self.isolation = "remote"
        else:
            self.isolation = info.get("level") or "unknown"
        if self.isolation == "process" and info.get("reason"):
            self.isolation_reason = info["reason"]
        if self.isolation == "bwrap" and info.get("network") == "1" and not self.network:
            # the launcher had to share the network (a TCP kernel manager): say so
            self.network = True
            self.isolation_reason = self.isolation_reason or "network shared: TCP transport"
        self._watch_quota()

    # -- the workspace quota ------------------------------------------------------------------
    def _watch_quota(self) -> None:
        """Start the guard that scans the workspace (in a thread) while the kernel lives, so code
        left running after its call returned cannot fill the disk unseen. Not for a kernel that
        runs elsewhere: its workspace is not on this machine."""
        if not self._guard.enabled or self._handle_remote():
            return
        if self._guard_task is None or self._guard_task.done():
            self._guard_task = asyncio.get_running_loop().create_task(
                self._guard.run(self._quota_breached), name="k2lab-quota"
            )

    async def _stop_quota(self) -> None:
        task, self._guard_task = self._guard_task, None
        if task is None or task is asyncio.current_task() or task.done():
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

    def _quota_what(self, u: Usage) -> str:
        g = self._guard
        if u.too_deep:
            return f"The workspace holds folders nested deeper than {MAX_DEPTH} levels"
        if g.max_files and u.files > g.allowed_files:
            return (
                f"The workspace grew past its limit of {g.max_files:,} files ({u.describe()}); "
                "delete files to free space"
            )
        return (
            f"The workspace grew past its {g.max_bytes / 1024**2:.0f} MB limit "
            f"({u.describe()}); delete files to free space"
        )

    async def _quota_breached(self, u: Usage) -> None:
        """The guard found the workspace over its allowance. A running call deals with it itself
        (it polls ``guard.breach``; the lock waits for it to end). Between calls, what writes is
        code left running in the background: the kernel is stopped (with everything it started)
        and restarted, and the next call is told."""
        async with self._lock:
            if self._closed or self._handle is None:
                return
            now = await self._guard.measure()
            if not self._guard.exceeded(now):
                self._guard.breach = None
                return
            what = self._quota_what(now)
            self._quota_strikes += 1
            if self._quota_strikes > 2:
                # restarts did not stop it: a process outside the kernel's reach (no cgroup)
                self._guard.settle(await self._guard.measure(whole=True))
                self._quota_note = (
                    f"[Between calls: {what}. Something the kernel started keeps writing even "
                    "after the kernel was restarted; stop it and delete files.]"
                )
                return
            try:
                await self.restart()
                done = "the kernel was stopped and restarted, so all variables were lost"
            except Exception as e:
                done = f"the kernel was stopped; restarting it failed ({e}), the next call retries"
            after = await self._guard.measure(whole=True)
            self._guard.settle(after)
            self._quota_note = (
                f"[Between calls, code left running in the background (a thread or a process): "
                f"{what}. To stop it, {done}. The workspace now holds {after.describe()}; "
                f"its limit is {self._guard.limit_text()}.]"
            )

    def _private_dir(self) -> Path:
        """The parent's private directory for the kernel's files (connection file, log, ipc
        sockets): a fresh 0700 temp dir outside the workspace, short enough for unix socket paths
        (~107 bytes), marked for ``leftovers`` and removed at shutdown. A bwrap sandbox sees only
        its ``ipc/`` part (see ``LocalHandle``); nothing the sandbox can write decides how the next
        kernel starts."""
        if self._private is None:
            base = tempfile.gettempdir()
            if len(os.path.join(base, "k2c-xxxxxxxx", "ipc", "kernel-9999")) > 100:
                base = "/tmp"
            self._private = Path(os.path.realpath(tempfile.mkdtemp(prefix="k2c-", dir=base)))
            leftovers.mark(self._private)
        return self._private

    def writable_dirs(self) -> list[Path]:
        """Host directories sandbox code can write to: the workspace and, for a kernel started
        here, the socket directory bound into bwrap (which a disk quota must count too)."""
        dirs = [self.workspace]
        if isinstance(self._handle, LocalHandle):
            dirs.append(self._handle.ipc_dir)
        return dirs

    def _open_log(self) -> IO[bytes]:
        """The kernel's stderr, in the private directory: created here (never a link or a file
        that was there before), kept open for the kernel's life and read through that fd."""
        path = self._private_dir() / "kernel.log"
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.fdopen(os.open(path, flags, 0o600), "a+b")

    async def _connect(self) -> dict[str, str]:
        """Connect a client and wait until the kernel answers; returns what ``_handshake`` read."""
        assert self._handle is not None
        kc = self._handle.client()
        with contextlib.suppress(Exception):
            # the kernel binds its sockets ~0.5 s after launch; retry connecting every 10 ms
            # rather than ZMQ's default 100 ms, so the first reply is not held back
            kc.context.setsockopt(zmq.RECONNECT_IVL, 10)
        kc.start_channels()
        self._kc = kc
        ready = asyncio.ensure_future(self._handshake(kc))
        try:
            while not ready.done():
                # returns as soon as the handshake is done: this poll only notices a dead kernel
                await asyncio.wait({ready}, timeout=_POLL)
                if not ready.done() and not await self._handle.is_alive():
                    raise SandboxError(
                        f"the kernel exited while starting ({describe_exit(self._exit_code())})"
                    )
            return ready.result()
        finally:
            if not ready.done():
                ready.cancel()
                with contextlib.suppress(BaseException):
                    await ready

    async def _handshake(self, kc: Any) -> dict[str, str]:
        """One request that both proves the kernel is ready and asks which level its launcher
        applied (the launcher may have fallen back).

        Replaces jupyter_client's ``wait_for_ready`` (a ``kernel_info`` round trip, then 0.2 s of
        iopub silence to flush it: a fixed ~0.25 s on every start) plus a separate probe request.
        The request is queued by ZMQ until the kernel binds its sockets. Ready means: the shell
        reply came back AND iopub delivered a status of ours, so the subscription is live (outputs
        of the first call cannot be lost) and everything the kernel published before it (its
        "starting" status, which ``_collect`` would take for a restart) has been read.
        """
        exprs = {
            "level": "__import__('os').environ.get('K2LAB_ISOLATION', '')",
            "reason": "__import__('os').environ.get('K2LAB_ISOLATION_REASON', '')",
            "network": "__import__('os').environ.get('K2LAB_NETWORK', '')",
        }
        deadline = time.monotonic() + _START_TIMEOUT
        probe = kc.execute("", silent=True, store_history=False, user_expressions=exprs)
        pending = {probe}
        info: dict[str, str] | None = None
        while info is None:
            try:
                reply = await kc.get_shell_msg(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise SandboxError(f"no answer within {_START_TIMEOUT:g} s") from None
            if reply["parent_header"].get("msg_id") != probe:
                continue
            info = {}
            for key, val in reply["content"].get("user_expressions", {}).items():
                text = val.get("data", {}).get("text/plain", "''")
                info[key] = text.strip("'\"")
        # the reply is in, so the probe's idle status is already published: if the subscription
        # was live by then, it arrives at once; if not, a kernel_info request publishes another
        while time.monotonic() < deadline:
            try:
                msg = await kc.get_iopub_msg(timeout=0.25)
            except queue.Empty:
                pending.add(kc.kernel_info())
                continue
            if (
                msg["msg_type"] == "status"
                and msg["content"].get("execution_state") == "idle"
                and msg["parent_header"].get("msg_id") in pending
            ):
                await self._drain_shell()  # kernel_info replies nobody reads
                return info
        raise SandboxError("the kernel's output channel did not connect")

    def _exit_code(self) -> int | None:
        return self._handle.exit_code() if self._handle is not None else None

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        try:  # through the parent's own fd: whatever is at the log's path now is not read
            fd = self._log.fileno()
            size = os.fstat(fd).st_size
            data = os.pread(fd, 4096, max(size - 4096, 0))
        except (OSError, ValueError):
            return ""
        text = data.decode(errors="replace").strip()[-600:]
        return f"\nkernel log:\n{text}" if text else ""

    async def _teardown(self) -> None:
        self._abandoned = None  # a cancelled call's id means nothing to the next kernel
        await self._stop_quota()
        if self._kc is not None:
            with contextlib.suppress(Exception):
                self._kc.stop_channels()
            self._kc = None
        if self._handle is not None:
            with contextlib.suppress(Exception):
                await self._handle.shutdown()
            self._handle = None
        if self._cgroup:
            cgroup.kill_all(self._cgroup, remove=True)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._private is not None:
            # off the event loop: the sandbox may have filled its socket directory
            await asyncio.to_thread(shutil.rmtree, self._private, ignore_errors=True)
            self._private = None

    async def restart(self) -> None:
        """A fresh kernel: all variables are lost; workspace files stay."""
        if self._closed:
            raise SandboxError("the sandbox was shut down")
        if self._handle is None:
            await self.start()
            return
        if self._kc is not None:
            with contextlib.suppress(Exception):
                self._kc.stop_channels()
            self._kc = None
        old = self._cgroup

        def between() -> dict[str, str]:
            # leftovers of a fork storm die before the new kernel starts; the new kernel gets a
            # fresh cgroup, since killed orphans count against a pids limit until init reaps them
            cgroup.kill_all(old, remove=True)
            self._generation += 1
            self._cgroup = f"{old.rsplit('-', 1)[0]}-{self._generation}"
            return {ENV_PREFIX + "CGROUP": self._cgroup}

        await self._handle.restart(between=between if old else None)
        await self._connect()
        self._restarts += 1

    reset = restart

    async def shutdown(self) -> None:
        """Stop the kernel (a running call ends with an error result); no restart after this."""
        self._closed = True
        await self._teardown()
        if self._own_workspace:
            # off the event loop: heavy mode's other lanes are still streaming on it
            await asyncio.to_thread(shutil.rmtree, self.workspace, ignore_errors=True)

    async def __aenter__(self) -> SandboxKernel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- running code -------------------------------------------------------------------------
    async def execute(self, code: str, *, timeout: float) -> ExecutionResult:
        if self._closed:
            return ExecutionResult(ok=False, text="[The sandbox was shut down.]")
        async with self._lock:
            t0 = time.monotonic()
            notes: list[str] = []
            restarted = False
            try:
                if self._handle is None:
                    await self.start()
                elif self._kc is None or not await self._alive():
                    code_ = describe_exit(self._exit_code())
                    await self.restart()
                    restarted = True
                    notes.append(
                        f"[The kernel had died since the last call ({code_}); it was restarted "
                        "and all variables were lost.]"
                    )
            except Exception as e:
                return ExecutionResult(
                    ok=False,
                    text=f"[The sandbox kernel could not be started: {e}]",
                    duration=time.monotonic() - t0,
                )
            self._quota_strikes = 0
            if self._quota_note:
                notes.insert(0, self._quota_note)
                self._quota_note = ""
                restarted = True
            elif self._guard.over_limit() and self._guard.over_limit(
                now := await self._guard.measure()  # fresh: the last call may have deleted files
            ):
                notes.append(
                    f"[The workspace is over its limit of {self._guard.limit_text()} (it holds "
                    f"{now.describe()}): delete files; a call that writes more is stopped.]"
                )
            try:
                result = await self._run(code, timeout, t0)
            except asyncio.CancelledError:
                if self._closed and not _being_cancelled():
                    # shutdown closed the sockets under us (their futures were cancelled)
                    return ExecutionResult(
                        ok=False, text="[The sandbox was shut down during this call.]"
                    )
                # the next call first makes sure this one has stopped (see ``_settle``)
                self._abandoned, self._running = self._running, None
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(self._interrupt()), 2.0)
                raise
            except Exception as e:  # a client error: the kernel is in an unknown state
                if self._closed:
                    return ExecutionResult(
                        ok=False, text="[The sandbox was shut down during this call.]"
                    )
                result = await self._after_client_error(e)
            if notes:
                result.text = "\n".join(notes) + "\n" + result.text
                result.restarted = result.restarted or restarted
            result.duration = time.monotonic() - t0
            return result

    async def _alive(self) -> bool:
        return self._handle is not None and await self._handle.is_alive()

    async def _interrupt(self) -> None:
        if self._handle is not None:
            await self._handle.interrupt()

    async def _collect(self, msg_id: str, out: OutputCollector, deadline: float) -> str:
        """Feed iopub messages of ``msg_id`` to ``out`` until idle ("idle") or a fault."""
        kc = self._kc
        # a remote kernel's liveness is a REST call to the gateway: ask less often
        every = _POLL_REMOTE if self._handle_remote() else _POLL
        next_check = time.monotonic() + every
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            if self._guard.breach is not None:
                return "quota"
            if now >= next_check:
                next_check = now + every
                if not await self._alive():
                    return "died"
            try:
                msg = await kc.get_iopub_msg(timeout=min(deadline - now, _POLL))
            except queue.Empty:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") in (
                "starting",
                "restarting",
            ):
                return "died"  # someone (a gateway) restarted the kernel under this call
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    return "idle"
                continue
            out.handle(msg)

    def _process_count(self) -> int:
        """Processes in this sandbox's cgroup (0 where there is none)."""
        return len(cgroup.read(self._cgroup, "cgroup.procs").split())

    def _at_process_limit(self) -> bool:
        if self.limits.processes <= 0:
            return False
        try:
            current = int(cgroup.read(self._cgroup, "pids.current"))
        except ValueError:  # no cgroup ("")
            return False
        return current >= self.limits.processes * 0.9

    def _handle_remote(self) -> bool:
        return bool(self._handle is not None and self._handle.remote)

    async def _drain_shell(self) -> None:
        """Drop queued shell replies (we read results from iopub) so they do not pile up."""
        with contextlib.suppress(Exception):
            for _ in range(1000):
                await self._kc.get_shell_msg(timeout=0)

    async def _run(self, code: str, timeout: float, t0: float) -> ExecutionResult:
        out = OutputCollector(self.limits.model_chars, self.limits.display_bytes)
        settled = await self._settle()
        await self._drain_shell()
        procs_before = self._process_count()
        msg_id = self._kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        self._running = msg_id
        status = await self._collect(msg_id, out, t0 + timeout)
        self._running = None
        note = ""
        restarted = timed_out = False
        breach = self._guard.breach
        if status in ("timeout", "quota"):
            timed_out = status == "timeout"
            what = (
                f"Timed out after {timeout:g} s"
                if timed_out or breach is None
                else self._quota_what(breach)
            )
            storm = self._process_count() > procs_before + 8
            if not storm:  # a fork storm is not worth interrupting: restart at once
                await self._interrupt()
                grace = time.monotonic() + self.limits.interrupt_grace
                status = await self._collect(msg_id, out, grace)
            if status == "idle" and self._process_count() > procs_before:
                # the kernel stopped but processes it started (a fork storm) keep running
                status = "stray"
                what += "; processes it started were still running"
            if status != "idle":
                await self.restart()
                restarted = True
            note = interrupt_note(what, stopped=status == "idle")
            if breach is not None:
                # what is there now stays allowed (so code can delete it); more is a new breach,
                # caught between calls too if a thread of this call keeps writing
                self._guard.settle(await self._guard.measure(whole=True))
        elif status == "idle" and self._at_process_limit():
            # processes the code left behind fill the limit: the next call could not even start
            # a thread, so free them now
            await self.restart()
            restarted = True
            note = (
                f"[The code's processes filled the sandbox's limit of {self.limits.processes}; "
                "the kernel was restarted to free them; all variables were lost.]"
            )
        elif status == "died":
            why = describe_exit(self._exit_code())
            await self.restart()
            restarted = True
            note = f"[The kernel died ({why}); it was restarted and {LOST}.]"
        return call_result(out, note, settled, timed_out=timed_out, restarted=restarted)
