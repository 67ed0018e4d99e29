"""HandForge backend: hand models, the ZeroMQ server, engines, corpus, evaluation and export.

Installed as the ``handforge`` package (this folder is ``backend/`` in the repository); the code
shared with the Blender add-on is the ``handforge_shared`` package (``shared/``).
"""

__version__ = "0.1.0"
