"""HandForge code shared by the backend and the Blender add-on: conventions, formats, protocol.

Only numpy (and pyzmq for the protocol and client) may be imported here; torch is used by
``rotations`` only when it is handed a tensor. The Blender add-on installs this package as a pure
wheel (built by ``build_addon.py``), so it has the same import name everywhere.
"""

# The one place the version is written: pyproject.toml, the add-on manifest and the server read it.
__version__ = "0.1.0"
