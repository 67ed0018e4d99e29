"""HandForge backend: hand models, the ZeroMQ server, engines, corpus, evaluation and export.

Installed as the ``handforge`` package (``backend/handforge/``); the code shared with the Blender
add-on is the ``handforge_shared`` package (``shared/handforge_shared/``).
"""

from handforge_shared import __version__

__all__ = ["__version__"]
