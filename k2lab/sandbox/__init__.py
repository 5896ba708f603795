"""Where model-written Python runs: a separate, isolated, resource-limited Jupyter kernel."""
