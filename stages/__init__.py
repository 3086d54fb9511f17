"""Pipeline stages: one module per DVC stage, plus a few shared modules.

Each stage runs as ``python -m stages.<name>``; ``dvc.yaml`` passes every path on the
command line and ``params.yaml`` holds every setting.
"""
