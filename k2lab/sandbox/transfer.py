"""Moving chosen variables into and out of a sandbox kernel, size-checked.

Into the sandbox: pickle (the sandbox unpickles data we chose; it trusts us). Out of it: never
pickle, since unpickling sandbox-made bytes would run sandbox code in the user's process. ``get``
accepts JSON-able values, ``bytes``, numpy arrays (``.npy`` without pickled objects) and pandas
DataFrames/Series (JSON "table" schema), decoded here without executing anything.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import pickle
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k2lab.sandbox.base import Limits


class TransferError(ValueError):
    """A value could not be moved (too large, unsupported type, missing name, kernel error)."""


# Runs in the sandbox; prints one JSON envelope line. Only stdlib, numpy/pandas if present.
_EXPORT = r"""
def __k2lab_export(value):
    import base64, io, json, sys
    mods = sys.modules
    if "numpy" in mods and isinstance(value, mods["numpy"].ndarray):
        buf = io.BytesIO(); mods["numpy"].save(buf, value, allow_pickle=False)
        return {"kind": "npy", "data": base64.b64encode(buf.getvalue()).decode()}
    if "pandas" in mods and isinstance(value, (mods["pandas"].DataFrame, mods["pandas"].Series)):
        return {"kind": "pandas", "frame": isinstance(value, mods["pandas"].DataFrame),
                "data": value.to_json(orient="table")}
    if isinstance(value, (bytes, bytearray)):
        return {"kind": "bytes", "data": base64.b64encode(bytes(value)).decode()}
    try:
        return {"kind": "json", "data": json.loads(json.dumps(value, allow_nan=True))}
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot export a {type(value).__name__} (use JSON-able values, bytes, "
                        f"numpy arrays or pandas objects): {e}") from None
print("\x00K2LAB" + __import__("json").dumps(__k2lab_export({name})))
del __k2lab_export
"""


def _decode(env: dict[str, Any]) -> Any:
    kind = env.get("kind")
    if kind == "json":
        return env["data"]
    if kind == "bytes":
        return base64.b64decode(env["data"])
    if kind == "npy":
        import numpy as np

        return np.load(io.BytesIO(base64.b64decode(env["data"])), allow_pickle=False)
    if kind == "pandas":
        import pandas as pd

        df = pd.read_json(io.StringIO(env["data"]), orient="table")
        return df if env.get("frame") else df.iloc[:, 0]
    raise TransferError(f"unknown transfer kind {kind!r}")


def _check_name(name: str) -> None:
    if not name.isidentifier() or name.startswith("__"):
        raise TransferError(f"{name!r} is not a valid variable name")


def unpicklable(name: str, kind: str, why: object) -> str:
    """Why ``name`` cannot be copied: pickle refused it (the same words in every face)."""
    return f"cannot copy {name!r} ({kind}): it cannot be pickled ({why})"


def too_large(name: str, size: int, limit: int) -> str:
    """Why ``name`` cannot be copied: its pickle is over the transfer limit."""
    return f"{name!r} is {size:,} bytes pickled; the limit is {limit:,} (Limits.transfer_bytes)"


def pickled(name: str, value: Any, limit: int) -> bytes:
    """``value`` pickled for ``put``, or a ``TransferError`` that says why it cannot go."""
    _check_name(name)
    if isinstance(value, Pickled):
        data = value.data
    else:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise TransferError(unpicklable(name, type(value).__name__, e)) from e
    if len(data) > limit:
        raise TransferError(too_large(name, len(data), limit))
    return data


@dataclass(frozen=True)
class Pickled:
    """A value pickled somewhere else (the notebook kernel behind the side panel), with its
    ``describe_value`` text from there: ``put`` sends the bytes as they are, so they are only
    ever unpickled inside the sandbox, never in this process."""

    data: bytes
    described: str


#: columns of a DataFrame named in the model's note (the rest are counted)
NOTE_COLUMNS = 30


def describe_value(value: Any) -> str:
    """A short description of a value for the model and the view: type, shape, columns."""
    if isinstance(value, (Pickled, FileBytes)):
        return value.described
    return described(value)


def described(value: Any) -> str:
    """``describe_value`` of a live value. Self-contained (only ``NOTE_COLUMNS``): its source is
    also run inside a notebook kernel (``k2lab.server.variables``)."""
    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    parts = [kind]
    if isinstance(shape, tuple):
        parts.append(f"shape {shape}")
    columns = getattr(value, "columns", None)
    dtypes = getattr(value, "dtypes", None)
    if columns is not None and dtypes is not None and hasattr(dtypes, "items"):
        cols = [f"{c} ({t})" for c, t in list(dtypes.items())[:NOTE_COLUMNS]]
        more = len(columns) - len(cols)
        parts.append("columns " + ", ".join(cols) + (f", and {more} more" if more > 0 else ""))
    elif shape is None and isinstance(value, (list, tuple, dict, set, str, bytes)):
        parts.append(f"length {len(value)}")
    dtype = getattr(value, "dtype", None)
    if dtype is not None and columns is None:
        parts.append(f"dtype {dtype}")
    return ", ".join(parts)


def variables_note(described: list[tuple[str, str]]) -> str:
    """For the model: which of the user's variables its python tool has (copies)."""
    lines = [
        "The user copied these variables into the python tool's namespace "
        "(copies: changing them there does not change the user's own):"
    ]
    lines += [f"- {name}: {what}" for name, what in described]
    return "\n".join(lines)


#: ``k2lab run --with NAME=FILE``: how a file's bytes (``d``) become a value, in the sandbox
FILE_READERS = {
    ".pkl": "__import__('pickle').loads(d)",
    ".pickle": "__import__('pickle').loads(d)",
    ".csv": "__import__('pandas').read_csv(__import__('io').BytesIO(d))",
    ".parquet": "__import__('pandas').read_parquet(__import__('io').BytesIO(d))",
    ".json": "__import__('json').loads(d)",
}


@dataclass
class FileBytes:
    """A file's bytes, read into a value inside the sandbox (``k2lab run --with NAME=FILE``):
    a pickle file is unpickled only there, and a CSV or Parquet file is parsed by the sandbox's
    pandas. ``put`` fills ``described`` from there (``describe_value`` then reads it)."""

    path: str
    data: bytes
    described: str = ""

    @property
    def reader(self) -> str:
        return file_reader(self.path)


def file_reader(path: str) -> str:
    """The ``FILE_READERS`` expression for ``path``'s kind, or a ``TransferError`` naming them."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_READERS:
        raise TransferError(f"cannot read {path}: --with takes {', '.join(FILE_READERS)} files")
    return FILE_READERS[suffix]


_MARK = "\x00K2LAB"

# Runs in the sandbox after a file's value is set: its ``described``, as one envelope line.
_DESCRIBE = "print(MARK + __import__('json').dumps(described(value)))\n"


def _envelope(out: str, what: str) -> Any:
    """The JSON after the last marker of sandbox output (the sandbox's own prints come before)."""
    start = out.rfind(_MARK)
    if start < 0:
        raise TransferError(f"no answer came back for {what}")
    return json.loads(out[start + len(_MARK) :])


class TransferMixin:
    """``put``/``get`` for ``SandboxKernel`` (uses its client, lock and limits)."""

    limits: Limits
    _kc: Any
    _lock: asyncio.Lock

    async def start(self) -> None:  # provided by SandboxKernel
        raise NotImplementedError

    async def _silent(self, code: str, timeout: float, cap: int) -> str:
        """Run bookkeeping code without touching history or ``_``; returns its stdout."""
        # one reader of iopub at a time: a concurrent execute would eat this call's messages
        async with self._lock:
            return await self._silent_locked(code, timeout, cap)

    async def _silent_locked(self, code: str, timeout: float, cap: int) -> str:
        if self._kc is None:
            await self.start()
        msg_id = self._kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        chunks: list[str] = []
        size = 0
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransferError(f"the sandbox did not answer within {timeout:g} s")
            try:
                msg = await self._kc.get_iopub_msg(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                return "".join(chunks)
            if kind == "error":
                raise TransferError(f"{content.get('ename')}: {content.get('evalue')}")
            if kind == "stream" and content.get("name") == "stdout":
                size += len(content["text"])
                if size > cap:
                    raise TransferError(
                        f"the value is larger than the transfer limit "
                        f"({self.limits.transfer_bytes:,} bytes, Limits.transfer_bytes)"
                    )
                chunks.append(content["text"])

    async def put(self, name: str, value: Any, *, timeout: float = 60.0) -> None:
        """Set variable ``name`` in the sandbox to a copy of ``value`` (pickled, size-checked)."""
        if isinstance(value, FileBytes):
            await self._put_file(name, value, timeout)
            return
        data = pickled(name, value, self.limits.transfer_bytes)
        blob = base64.b64encode(data).decode()
        code = f"import pickle as _p, base64 as _b\n{name} = _p.loads(_b.b64decode('{blob}'))\n"
        code += "del _p, _b\n"
        await self._silent(code, timeout, cap=1 << 20)

    async def _put_file(self, name: str, f: FileBytes, timeout: float) -> None:
        """``name`` = the file's value, read in the sandbox; then its description from there."""
        _check_name(name)
        limit = self.limits.transfer_bytes
        if len(f.data) > limit:
            raise TransferError(
                f"{f.path} is {len(f.data):,} bytes; the limit is {limit:,} (Limits.transfer_bytes)"
            )
        reader, blob = f.reader, base64.b64encode(f.data).decode()
        code = f"{name} = (lambda d: {reader})(__import__('base64').b64decode('{blob}'))\n"
        src = "from __future__ import annotations\n" + inspect.getsource(described) + _DESCRIBE
        scope = f"{{'NOTE_COLUMNS': {NOTE_COLUMNS!r}, 'MARK': {_MARK!r}, 'value': {name}}}"
        code += f"exec({src!r}, {scope})\n"  # in a dict of its own: no helper name is left
        try:
            out = await self._silent(code, timeout, cap=1 << 20)
        except TransferError as e:
            raise TransferError(f"the sandbox could not read {f.path}: {e}") from e
        f.described = f"{_envelope(out, name)}, read from {Path(f.path).name}"

    async def get(self, name: str, *, timeout: float = 60.0) -> Any:
        """A copy of sandbox variable ``name`` (JSON-able, bytes, numpy or pandas; no pickle)."""
        _check_name(name)
        # the value travels base64-encoded (4/3 of its size) or as JSON text
        cap = self.limits.transfer_bytes * 4 // 3 + 4096
        out = await self._silent(_EXPORT.replace("{name}", name), timeout, cap=cap)
        return _decode(_envelope(out, repr(name)))
