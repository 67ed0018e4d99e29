"""HandForge code shared by the backend and the Blender add-on: conventions, formats, protocol.

Only numpy (and pyzmq for the protocol and client) may be imported here; torch is used by
``rotations`` only when it is handed a tensor. Modules import each other relatively so that the
add-on can carry a copy of this package inside its zip.
"""

__version__ = "0.1.0"
