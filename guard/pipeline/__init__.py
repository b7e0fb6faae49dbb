"""Pipelines: the end-to-end jobs that compose the stages (artifacts, signing, lock, merge, ...).
The CLI calls a pipeline; a pipeline calls stages; stages never call back up."""
