from pytest_jupyter.jupyter_server import *  # noqa: F403
