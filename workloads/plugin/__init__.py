"""The reference system as a harness plug-in: its targets and payload generators,
registered in ``pyproject.toml`` under the ``lbh.targets`` and ``lbh.payloads``
entry-point groups. This package is the one place in ``workloads`` that imports the
harness (its public plug-in API, :mod:`harness.targets`); the workloads themselves import
only ``instrumentation``."""
