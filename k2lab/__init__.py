"""k2lab: a thinking model that shows its work in Jupyter.

The engine (``k2lab.agent``) yields typed events (``k2lab.events``); the faces (magics, the
server extension, the CLI) consume them. Importing this package must stay cheap: faces import
their heavy dependencies lazily.
"""

__version__ = "0.1.0"


def load_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """``%load_ext k2lab``: registers the ``%k2`` / ``%%k2`` magics."""
    from k2lab.notebook.magics import load_ipython_extension as _load

    _load(ipython)


def wait():  # type: ignore[no-untyped-def]
    """``await k2lab.wait()``: wait for the ``%k2`` runs of this kernel (Run All, nbclient)."""
    from k2lab.notebook.magics import wait as _wait

    return _wait()


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    from k2lab.server.app import K2LabApp

    return [{"module": "k2lab.server.app", "app": K2LabApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "k2lab"}]
