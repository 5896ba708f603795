"""The sandbox behaves like a Jupyter kernel: state, errors, rich outputs, reset, put/get."""

from __future__ import annotations

import pytest

from k2lab.sandbox.kernel import SandboxKernel
from k2lab.sandbox.transfer import TransferError
from k2lab.tools.python import PythonParams, PythonTool

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_state_persists_and_level_is_reported(shared: SandboxKernel) -> None:
    r = await shared.execute("x = 41\nprint('hi')\nx + 1", timeout=10)
    assert r.ok and "hi" in r.text and "42" in r.text
    r = await shared.execute("x * 2", timeout=10)
    assert r.ok and "82" in r.text
    assert shared.isolation in ("bwrap", "process")
    assert shared.isolation in shared.isolation_note
    if shared.isolation == "process":
        assert "can read your files" in shared.isolation_note


async def test_error_is_a_result(shared: SandboxKernel) -> None:
    r = await shared.execute("def f():\n    return 1/0\nf()", timeout=10)
    assert not r.ok and not r.restarted
    assert "ZeroDivisionError" in r.text and "\x1b[" not in r.text
    assert (await shared.execute("1 + 1", timeout=10)).text.strip() == "2"


async def test_rich_outputs(shared: SandboxKernel) -> None:
    code = (
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\n"
        "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})"
    )
    r = await shared.execute(code, timeout=30)
    assert r.ok, r.text
    mimes = [m for b in r.display for m in b["data"]]
    assert "image/png" in mimes and "text/html" in mimes
    assert "[image/png output" in r.text and "shown to the user" in r.text
    assert "iVBOR" not in r.text  # no base64 for the model
    assert "a  b" in r.text.replace("   ", "  ")  # the DataFrame's text/plain for the model


async def test_workspace_is_cwd_and_writable(shared: SandboxKernel) -> None:
    r = await shared.execute(
        "import os\nopen('out.txt', 'w').write('data')\nprint(os.getcwd())", timeout=10
    )
    assert r.ok and str(shared.workspace) in r.text
    assert (shared.workspace / "out.txt").read_text() == "data"


async def test_put_and_get(shared: SandboxKernel) -> None:
    import numpy as np
    import pandas as pd

    await shared.put("data", {"xs": [1, 2, 3], "name": "k2"})
    r = await shared.execute("data['total'] = sum(data['xs'])\ndata['total']", timeout=10)
    assert r.ok and "6" in r.text
    assert await shared.get("data") == {"xs": [1, 2, 3], "name": "k2", "total": 6}
    await shared.put("df", pd.DataFrame({"a": [1.5, 2.5]}))
    await shared.execute("import numpy as np\narr = np.arange(6).reshape(2, 3)", timeout=10)
    arr = await shared.get("arr")
    assert isinstance(arr, np.ndarray) and arr.shape == (2, 3) and arr[1, 2] == 5
    df = await shared.get("df")
    assert list(df["a"]) == [1.5, 2.5]
    assert await shared.get("blob") if False else True
    await shared.execute("blob = b'\\x00\\x01'", timeout=10)
    assert await shared.get("blob") == b"\x00\x01"


async def test_transfer_limits_and_errors(shared: SandboxKernel) -> None:
    with pytest.raises(TransferError, match="limit"):
        await shared.put("big", b"x" * (9 * 1024**2))
    with pytest.raises(TransferError, match="NameError"):
        await shared.get("no_such_variable")
    await shared.execute("class C: pass\nobj = C()", timeout=10)
    with pytest.raises(TransferError, match="cannot export"):
        await shared.get("obj")  # never pickle out of the sandbox
    with pytest.raises(TransferError, match="not a valid"):
        await shared.put("1x; import os", 1)
    await shared.execute("huge = b'x' * (9 * 1024**2)", timeout=10)
    with pytest.raises(TransferError, match="limit"):
        await shared.get("huge")
    assert (await shared.execute("print('next')", timeout=10)).ok


async def test_reset_drops_state(shared: SandboxKernel) -> None:
    await shared.execute("kept = 1", timeout=10)
    await shared.reset()
    r = await shared.execute("kept", timeout=10)
    assert not r.ok and "NameError" in r.text


async def test_python_tool(shared: SandboxKernel) -> None:
    tool = PythonTool(shared, timeout=5)
    assert tool.name == "python"
    out = await tool.call(PythonParams(code="print(6 * 7)"))
    assert out.ok and out.output.strip() == "42"
    out = await tool.call(PythonParams(code="y = 1"))
    assert out.ok and out.output == "(no output)"
    out = await tool.call(PythonParams(code="import time\nwhile True: time.sleep(0.01)"))
    assert not out.ok and "Timed out after 5 s" in out.output


async def test_shutdown_during_a_call(level: str) -> None:
    import asyncio
    import time

    sk = SandboxKernel(isolation=level)
    await sk.start()
    task = asyncio.ensure_future(sk.execute("import time\ntime.sleep(30)", timeout=60))
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    await sk.shutdown()
    r = await asyncio.wait_for(task, 10)
    assert not r.ok and "shut down" in r.text and time.monotonic() - t0 < 10
    assert not sk.workspace.exists()
    r = await sk.execute("print(1)", timeout=5)
    assert not r.ok and "shut down" in r.text  # no kernel comes back by itself


async def test_long_workspace_path(level: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # unix sockets allow ~107 bytes: a deep workspace gets its sockets in a short private dir
    ws = tmp_path / ("deep-directory-name-" * 5) / "workspace"
    async with SandboxKernel(isolation=level, workspace=ws) as sk:
        assert len(str(ws)) > 100 and sk.isolation == level
        r = await sk.execute("import os\nopen('f.txt', 'w').write('x')\nos.getcwd()", timeout=10)
        assert r.ok and str(ws) in r.text, r.text
    assert (ws / "f.txt").read_text() == "x"  # a workspace the caller chose is kept


async def test_concurrent_calls_do_not_mix(shared: SandboxKernel) -> None:
    import asyncio

    r1, _, r2 = await asyncio.gather(
        shared.execute("import time\ntime.sleep(0.3)\nprint('first')", timeout=10),
        shared.put("moved", [1, 2]),
        shared.execute("print('second', moved)", timeout=10),
    )
    assert r1.ok and r1.text.strip() == "first"
    assert r2.ok and r2.text.strip() == "second [1, 2]"
