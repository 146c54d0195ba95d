"""midbrain: the composition root. The CLI, configuration loading and the demo supervisor."""

__version__ = "0.1.0"
