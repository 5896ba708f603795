"""Where model-written Python runs: a separate, isolated, resource-limited Jupyter kernel.

``SandboxKernel`` (``k2lab.sandbox.kernel``) is imported lazily by callers; this package's import
stays cheap because the kernel launcher imports it too.
"""
