"""The notebook face: the live trace view (``trace_widget``, fed by the pure ``state`` model),
its static renderings (``render``), the per-kernel ``session`` the ``%k2`` magics drive
(``commands``), and ``fork`` (conversations rebuilt from recorded events)."""
