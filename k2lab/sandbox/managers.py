"""Who starts the sandbox kernel: our own ``AsyncKernelManager``, or a caller's kernel manager.

``KernelHandle`` is the small surface ``SandboxKernel`` needs (start, client, alive, interrupt,
restart, shutdown). ``LocalHandle`` owns an ``AsyncKernelManager`` (ipc transport, its files in a
private directory of the parent, outside the workspace). ``ProvidedHandle`` adapts what a Jupyter
server hands over:

- a single kernel manager (``start_kernel(**kw)``, ``client()``, ...), or
- a multi-kernel manager (``start_kernel(kernel_name=..., **kw) -> kernel_id``,
  ``get_kernel(kernel_id)``, ``restart_kernel(kernel_id)``, ``shutdown_kernel(kernel_id)``), such as
  jupyter_server's ``AsyncMappingKernelManager`` or its ``GatewayMappingKernelManager``: with a
  gateway configured (``--gateway-url``), the sandbox kernels then start on the gateway's cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager

KERNEL_NAME = "k2lab-sandbox"
#: The launcher's variable naming the fd of the kernel's lifeline pipe.
LIFELINE_ENV = "K2LAB_SANDBOX_LIFELINE"
#: The launcher's variable naming the parent's private kernel directory (see ``LocalHandle``).
RUNTIME_ENV = "K2LAB_SANDBOX_RUNTIME"


def kernel_spec_dict() -> dict[str, Any]:
    """The kernelspec shipped in ``kernel/kernel.json`` (also used when it is not installed)."""
    return {
        "argv": ["python", "-m", "k2lab.sandbox.launch", "-f", "{connection_file}"],
        "display_name": "k2lab sandbox (Python)",
        "language": "python",
        # an interrupt_request on the control channel reaches the kernel through bwrap and
        # across gateways, where a signal to the launcher's process group would not
        "interrupt_mode": "message",
        "metadata": {"debugger": False, "k2lab": {"sandbox": True}},
    }


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class LocalHandle:
    """A kernel we start ourselves through jupyter_client.

    Its files live in ``runtime_dir``, a private directory of the parent outside the workspace:
    the connection file and ``ipc/`` for the sockets. Only ``ipc/`` is shared with a bwrap
    sandbox (its kernel binds the sockets there), and nothing is ever read back from it. The
    launcher takes that directory from ``K2LAB_SANDBOX_RUNTIME`` and refuses a connection file
    that disagrees; before every restart the connection file is written again from this
    manager's memory, so whatever a process-level sandbox (which can reach it) wrote is not read.
    """

    remote = False

    def __init__(self, kernel_name: str, runtime_dir: Path) -> None:
        #: write end of the kernel's lifeline pipe (see ``_lifeline``)
        self._lifeline_w: int | None = None
        self.runtime_dir = runtime_dir
        self.ipc_dir = runtime_dir / "ipc"
        self.ipc_dir.mkdir(mode=0o700, exist_ok=True)
        self.km = AsyncKernelManager(
            kernel_name=kernel_name,
            transport="ipc",
            ip=str(self.ipc_dir / "kernel"),
            connection_file=str(runtime_dir / "kernel.json"),
        )
        try:
            KernelSpecManager().get_kernel_spec(kernel_name)
        except NoSuchKernel:
            if kernel_name != KERNEL_NAME:
                raise
            # not installed (e.g. a source checkout without the install hook): same spec in memory
            self.km._kernel_spec = KernelSpec(resource_dir="", **kernel_spec_dict())

    def _fresh_files(self) -> None:
        """Forget every file the last kernel's sandbox could have touched: the connection file is
        written again from the manager's memory (jupyter_client would otherwise keep and re-read
        it), the socket directory starts empty, the last start directory (the launcher's, at the
        process level) goes. The old kernel is dead by now."""
        km = self.km
        with contextlib.suppress(FileNotFoundError):
            os.unlink(km.connection_file)
        km._connection_file_written = False
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        self.ipc_dir.mkdir(mode=0o700, exist_ok=True)
        for old in self.runtime_dir.glob("start-*"):  # the process level's start directories
            shutil.rmtree(old, ignore_errors=True)

    def _lifeline(self, env: dict[str, str]) -> int:
        """A new pipe whose read end the kernel inherits and watches: when this process dies,
        by SIGKILL too, the kernel reads EOF and exits. Returns the read end (close it once the
        kernel is launched); the write end stays here and is inherited by nobody.

        ``PR_SET_PDEATHSIG`` (set by the launcher) alone is not enough: bubblewrap clears it
        when it changes credentials at the "bwrap" level, and it fires with the *thread* that
        forked, not the process. A pipe crosses the PID namespace and ends with the process.
        """
        self._close_lifeline()
        r, self._lifeline_w = os.pipe()
        env[LIFELINE_ENV] = str(r)
        return r

    def _close_lifeline(self) -> None:
        if self._lifeline_w is not None:
            os.close(self._lifeline_w)
            self._lifeline_w = None

    async def start(self, env: dict[str, str], log: Any) -> None:
        env = dict(env)
        env[RUNTIME_ENV] = str(self.runtime_dir)
        r = self._lifeline(env)
        try:
            await self.km.start_kernel(env=env, stdout=log, stderr=log, pass_fds=(r,))
        finally:
            os.close(r)

    def client(self) -> Any:
        return self.km.client()

    async def is_alive(self) -> bool:
        return bool(await self.km.is_alive())

    def exit_code(self) -> int | None:
        proc = getattr(self.km.provisioner, "process", None)
        return None if proc is None else proc.poll()

    async def interrupt(self) -> None:
        await self.km.interrupt_kernel()

    async def restart(self, between: Callable[[], dict[str, str]] | None = None) -> None:
        """Kill the kernel, run ``between`` (kill its leftovers; returns changes to the launch
        environment), start it again."""
        km = self.km
        try:
            await km.shutdown_kernel(now=True, restart=True)
        except Exception:
            pass  # a dead kernel may fail to shut down cleanly; it is started again below
        args: dict[str, Any] = dict(km._launch_args or {})
        env: dict[str, str] = dict(args.get("env") or {})
        if between is not None:
            env.update(between())
        # off the event loop: the sandbox may have left many files in the socket directory
        await asyncio.to_thread(self._fresh_files)
        env[RUNTIME_ENV] = str(self.runtime_dir)
        r = self._lifeline(env)
        args["env"], args["pass_fds"] = env, (r,)
        try:
            await km.start_kernel(**args)
        finally:
            os.close(r)

    async def shutdown(self) -> None:
        try:
            if self.km.has_kernel:
                await self.km.shutdown_kernel(now=True)
        finally:
            self._close_lifeline()


class ProvidedHandle:
    """A kernel started by a caller's (multi-)kernel manager, e.g. a Jupyter server's."""

    def __init__(self, manager: Any, kernel_name: str) -> None:
        self.manager = manager
        self.kernel_name = kernel_name
        self.multi = hasattr(manager, "get_kernel")
        self.kernel_id: str | None = None
        self.remote = runs_kernels_elsewhere(manager, kernel_name)

    @property
    def km(self) -> Any:
        return self.manager.get_kernel(self.kernel_id) if self.multi else self.manager

    async def start(self, env: dict[str, str], log: Any) -> None:
        if self.multi:
            self.kernel_id = await _maybe(
                self.manager.start_kernel(kernel_name=self.kernel_name, env=env)
            )
        else:
            await _maybe(self.manager.start_kernel(env=env))
        # the manager's auto-restarter would replace a dead kernel behind our back (our call then
        # waits for a reply that never comes); SandboxKernel restarts it itself and says so
        km = self.km
        stop = getattr(km, "stop_restarter", None)
        if callable(stop):
            stop()  # before autorestart=False: stop_restarter does nothing without autorestart
        if hasattr(km, "autorestart"):
            km.autorestart = False

    def client(self) -> Any:
        return self.km.client()

    async def is_alive(self) -> bool:
        if self.multi:
            return bool(await _maybe(self.manager.is_alive(self.kernel_id)))
        return bool(await _maybe(self.km.is_alive()))

    def exit_code(self) -> int | None:
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        return None if proc is None else proc.poll()

    async def interrupt(self) -> None:
        if self.multi:
            await _maybe(self.manager.interrupt_kernel(self.kernel_id))
        else:
            await _maybe(self.km.interrupt_kernel())

    async def restart(self, between: Callable[[], dict[str, str]] | None = None) -> None:
        if self.multi:
            await _maybe(self.manager.restart_kernel(self.kernel_id, now=True))
        else:
            await _maybe(self.km.restart_kernel(now=True))

    async def shutdown(self) -> None:
        if self.multi:
            if self.kernel_id is not None:
                await _maybe(self.manager.shutdown_kernel(self.kernel_id, now=True))
                self.kernel_id = None
        else:
            await _maybe(self.km.shutdown_kernel(now=True))


def runs_kernels_elsewhere(manager: Any, kernel_name: str) -> bool:
    """Whether ``manager`` would start ``kernel_name`` somewhere other than this machine.

    True for jupyter_server's gateway managers (``--gateway-url``) and for kernelspecs with a
    non-local kernel provisioner. A local manager would start the sandbox over TCP (jupyter's
    default), which cannot cross a closed network namespace; ``SandboxKernel`` then starts the
    kernel itself over ipc instead.
    """
    if "gateway" in type(manager).__name__.lower():
        return True
    ksm = getattr(manager, "kernel_spec_manager", None)
    if ksm is None:
        return False
    try:
        spec = ksm.get_kernel_spec(kernel_name)
    except Exception:
        return False
    prov = (spec.metadata or {}).get("kernel_provisioner", {}).get("provisioner_name", "")
    return bool(prov) and prov != "local-provisioner"


def write_kernelspec(dest: Path) -> Path:
    """Write the kernelspec directory (used by the install hook and tests)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "kernel.json").write_text(json.dumps(kernel_spec_dict(), indent=2) + "\n")
    return dest
