"""The commands of ``python -m mlpipeline <command>``, one short module each; see
``mlpipeline.__main__`` for the list."""
