"""The offline demo model: a scripted K2-style agent behind an OpenAI-compatible SSE server.

``start_demo_server()`` runs it on 127.0.0.1; ``DEMO_PROMPTS`` lists the prompts it plays. It needs
no key and no network, and every face labels it ``DEMO_MODEL_LABEL`` so nobody mistakes it for
Kimi K2 Thinking.
"""

from k2lab.providers.demo.scripts import DEMO_MODEL_LABEL, DEMO_PROMPTS, match_demo
from k2lab.providers.demo.server import DemoServer, start_demo_server

__all__ = ["DEMO_MODEL_LABEL", "DEMO_PROMPTS", "DemoServer", "match_demo", "start_demo_server"]
