"""guard: safe sharing and merging of fine-tuned models.

Stages (one package each, data flows one way from the CLI through the pipeline):
artifacts -> signing -> lock -> probes -> merge -> policy -> pipeline -> service.
Importing this package must stay cheap: no torch, no transformers.
"""

__version__ = "0.1.0"
