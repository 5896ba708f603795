"""The side panel's "Copy into the sandbox": named variables of a notebook's kernel, pickled there.

The panel names the notebook's kernel (its id) and the variables; this module asks that kernel,
through the Jupyter server's own kernel manager, for each value pickled and described, and hands
back ``transfer.Pickled`` values for ``RunSpec.variables``: the driver loads them into the
session's sandbox with the same ``put`` as ``%k2 --with``, and tells the model the same note.

- **Nothing is left behind in the notebook.** The work is one ``user_expressions`` entry of a
  silent execute request: no history, no execution count, no ``_``, no name in the user's
  namespace (the helper code runs in a fresh dict), and no iopub output, so the pickled bytes
  travel on the shell channel to this client only, not to every browser showing the notebook.
- **Checked there, before anything is sent.** Missing names, values pickle refuses and pickles
  over ``Limits.transfer_bytes`` are found in the kernel; then only the refusals come back, with
  the same words as ``%k2 --with`` (``transfer.unpicklable`` / ``too_large``), and no run starts.
- **The bytes are never unpickled here**: only inside the sandbox (``transfer.Pickled``).
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import queue
import time
from typing import Any

from jupyter_client.session import Session

from k2lab.sandbox.base import Limits
from k2lab.sandbox.transfer import (
    NOTE_COLUMNS,
    Pickled,
    TransferError,
    described,
    too_large,
    unpicklable,
)

#: seconds to wait for the notebook's kernel (a busy kernel answers only after its cell)
TIMEOUT = 30.0
MAX_NAMES = 20

# Runs in the notebook's kernel, in a fresh dict; ``ns`` is the user's namespace.
_COPY = """
def copy(ns, names, limit):
    import base64, json, pickle
    found, refused = {}, {}
    for name in names:
        if name not in ns:
            refused[name] = {"why": "missing"}
            continue
        value = ns[name]
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            refused[name] = {"why": "pickle", "type": type(value).__name__, "error": str(e)}
            continue
        if len(data) > limit:
            refused[name] = {"why": "size", "size": len(data)}
            continue
        found[name] = (data, value)
    if refused:  # say why, and send none of the bytes
        return json.dumps({"refused": refused})
    return json.dumps({"values": {
        n: {"data": base64.b64encode(d).decode(), "described": described(v)}
        for n, (d, v) in found.items()
    }})

out = copy(ns, NAMES, LIMIT)
"""


def kernel_expression(names: list[str], limit: int) -> str:
    """One Python expression (for ``user_expressions``) that evaluates to the JSON answer."""
    # annotations stay strings: the kernel has no ``typing.Any`` in this scope
    source = (
        "from __future__ import annotations\n"
        + inspect.getsource(described)
        + _COPY.replace("NAMES", repr(names)).replace("LIMIT", repr(limit))
    )
    scope = f"{{'ns': globals(), 'NOTE_COLUMNS': {NOTE_COLUMNS!r}}}"
    return f"(lambda d: (exec({source!r}, d), d['out'])[1])({scope})"


def _refusal(name: str, r: dict[str, Any], limit: int) -> str:
    if r.get("why") == "missing":
        return f"no variable {name!r} in the notebook's kernel"
    if r.get("why") == "size":
        return too_large(name, int(r.get("size", 0)), limit)
    return unpicklable(name, str(r.get("type", "?")), r.get("error", ""))


def check_names(names: list[str]) -> list[str]:
    """The names, each once, or a ``TransferError`` for one that is not a variable name."""
    out = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not out:
        raise TransferError("name at least one variable to copy")
    if len(out) > MAX_NAMES:
        raise TransferError(f"at most {MAX_NAMES} variables can be copied at once")
    for n in out:
        if not n.isidentifier() or n.startswith("__"):
            raise TransferError(f"{n!r} is not a valid variable name")
    return out


async def read_variables(
    kernel_manager: Any,
    kernel_id: str,
    names: list[str],
    *,
    limit: int | None = None,
    timeout: float = TIMEOUT,
) -> dict[str, Pickled]:
    """The named variables of kernel ``kernel_id``, pickled and described there; a
    ``TransferError`` that names every refused variable (or why the kernel could not be asked)."""
    names = check_names(names)
    limit = Limits().transfer_bytes if limit is None else limit
    if kernel_id not in kernel_manager:
        raise TransferError(f"no running kernel {kernel_id!r} (is the notebook's kernel running?)")
    km = kernel_manager.get_kernel(kernel_id)
    # a session of its own: a client on the kernel manager's session shares its zmq identity
    # with the other clients of that kernel, and the kernel's replies then go astray
    own = Session(key=km.session.key, signature_scheme=km.session.signature_scheme)
    kc = km.client(session=own)
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        reply = await _ask(kc, kernel_expression(names, limit), timeout)
    finally:
        kc.stop_channels()
    if reply.get("status") != "ok":
        raise TransferError(
            f"the notebook's kernel could not read the variables "
            f"({reply.get('ename')}: {reply.get('evalue')})"
        )
    answer = json.loads(ast.literal_eval(reply["data"]["text/plain"]))
    refused = answer.get("refused") or {}
    if refused:
        raise TransferError("; ".join(_refusal(n, r, limit) for n, r in refused.items()))
    return {
        n: Pickled(base64.b64decode(v["data"]), str(v["described"]))
        for n, v in answer["values"].items()
    }


async def _ask(kc: Any, expression: str, timeout: float) -> dict[str, Any]:
    """The ``user_expressions`` answer of one silent execute request on ``kc``'s shell."""
    msg_id = kc.execute(
        "", silent=True, store_history=False, allow_stdin=False,
        user_expressions={"k2lab": expression},
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransferError(
                f"the notebook's kernel did not answer within {timeout:g} s (is a cell running?)"
            )
        try:
            msg = await kc.get_shell_msg(timeout=min(left, 1.0))
        except queue.Empty:
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if content.get("status") != "ok":
            return {"status": "error", **content}
        result: dict[str, Any] = content.get("user_expressions", {}).get("k2lab", {})
        return result
