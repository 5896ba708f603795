"""Run as a subprocess by test_secrets.py: an engine process that holds secrets starts a sandbox
and reports every route by which sandbox code could find them.

argv: LEVEL. The secret (``$K2LAB_API_KEY``, never in argv) is in this process's real
environment (from exec, so also in ``/proc/<pid>/environ``), in files under $HOME and in
the project directory (the cwd).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from k2lab.sandbox.kernel import SandboxKernel

PROBE = r"""
import glob, json, os, subprocess
secret = {secret!r}
found = {{}}
found["os.environ"] = [k for k, v in os.environ.items() if secret in v]
hits = []
for d in glob.glob("/proc/[0-9]*"):
    for name in ("environ", "cmdline"):
        try:
            with open(f"{{d}}/{{name}}", "rb") as f:
                if secret.encode() in f.read():
                    hits.append(f"{{d}}/{{name}}")
        except OSError:
            pass
found["/proc"] = hits
found["pids_visible"] = len(glob.glob("/proc/[0-9]*"))
found["own_pids"] = [os.getpid()]
try:
    ps = subprocess.run(["ps", "auxeww"], capture_output=True, text=True, timeout=10).stdout
    found["ps"] = secret in ps
except OSError as e:
    found["ps"] = False
    found["ps_error"] = str(e)
files = []
for path in {paths!r}:
    try:
        with open(path) as f:
            if secret in f.read():
                files.append(path)
    except OSError:
        pass
found["files"] = files
walked = []
for root in {roots!r}:
    for dirpath, _, names in os.walk(root):
        for n in names:
            try:
                with open(os.path.join(dirpath, n), errors="ignore") as f:
                    if secret in f.read(1_000_000):
                        walked.append(os.path.join(dirpath, n))
            except OSError:
                pass
found["walk"] = walked
print("PROBE" + json.dumps(found))
"""


async def main(level: str, secret: str) -> None:
    home = os.environ["HOME"]
    paths = [
        os.path.join(home, ".config", "k2lab", "key"),
        os.path.join(home, ".jupyter", "jupyter_server_config.py"),
        os.path.join(os.getcwd(), ".env"),
    ]
    sk = SandboxKernel(isolation=level)
    await sk.start()
    try:
        code = PROBE.format(secret=secret, paths=paths, roots=[home, os.getcwd()])
        r = await sk.execute(code, timeout=60)
        line = next((x for x in r.text.splitlines() if x.startswith("PROBE")), None)
        if line is None:
            raise SystemExit(f"probe failed: {r.text}")
        result = json.loads(line[5:])
        result["isolation"] = sk.isolation
        print(json.dumps(result))  # noqa: T201
    finally:
        await sk.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], os.environ["K2LAB_API_KEY"]))
