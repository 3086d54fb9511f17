"""The pipeline's five DVC stages, one module each: ``python -m stages.<name>``.

Each is a thin ``main``: read its inputs, call the library (``mlpipeline``), write its
outputs, log to MLflow. ``dvc.yaml`` passes every path on the command line and
``params.yaml`` holds every setting. A stage never imports another stage.
"""
