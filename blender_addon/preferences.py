"""Add-on preferences: how to start or reach the backend."""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, StringProperty

DEFAULT_ADDRESS = "tcp://127.0.0.1:5780"
DEFAULT_COMMAND = "handforge serve --port {port}"


class HANDFORGE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    address: StringProperty(
        name="Backend Address", default=DEFAULT_ADDRESS,
        description="Where the backend listens (tcp://HOST:PORT). A remote host needs CurveZMQ keys and "
                    "Blender's Allow Online Access")
    server_command: StringProperty(
        name="Start Command", default=DEFAULT_COMMAND,
        description="Command that starts a local backend; {port} is replaced by the address's port. "
                    "Use the full path of `handforge` if it is not on the PATH")
    server_public_key: StringProperty(
        name="Server Public Key", subtype="FILE_PATH",
        description="The backend's public key (.key from `handforge keys`), for a remote backend")
    client_secret_key: StringProperty(
        name="Client Secret Key", subtype="FILE_PATH",
        description="This computer's key pair (.key_secret from `handforge keys`), for a remote backend")
    connect_timeout: FloatProperty(
        name="Connect Timeout", default=60.0, min=1.0, max=600.0, unit="TIME_ABSOLUTE",
        description="How long to wait for a backend to answer (a fresh backend probes its devices first)")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "address")
        layout.prop(self, "server_command")
        col = layout.column(heading="Remote (CurveZMQ)")
        col.prop(self, "server_public_key")
        col.prop(self, "client_secret_key")
        layout.prop(self, "connect_timeout")


def get(context=None) -> HANDFORGE_AP_preferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


CLASSES = (HANDFORGE_AP_preferences,)
