"""sensorpipe: the shared library every pipeline service imports.

Lineage, configuration, batch envelopes, the SQS consumer runtime and the SQLite
pipeline controller live here exactly once; each service under ``services/`` is only
its handler.
"""

__version__ = "0.1.0"
