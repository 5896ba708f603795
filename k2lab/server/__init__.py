"""The Jupyter server face: an ``ExtensionApp`` serving the side panel's REST + WebSocket API.

``app`` (the extension, its settings), ``handlers`` (HTTP/WS routes, payload validation),
``sessions`` (one agent per chat session, its event log, its decisions), ``store`` (sessions on
disk as append-only JSONL), ``policy`` (which tool calls always need a person), ``notebook_tools``
(the model's tools that act on the user's open notebook through the panel).
"""
