"""Sending and receiving the frames of one ZeroMQ message, for the backend's and the client's sockets.

pyzmq's ``send_multipart``/``recv_multipart`` combine its enum flags and ask ``RCVMORE`` through
``getsockopt`` for every frame, which builds enum objects each time: about 4 us per message and side
on these cores, a tenth of a loopback ping. These helpers do the same with plain ints and ``Frame.more``.
"""

from __future__ import annotations

import struct
from typing import Sequence

import zmq

EVENTS, POLLIN, NOBLOCK, SNDMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.SNDMORE)


def send_frames(socket: zmq.Socket, frames: Sequence, copy: bool = True) -> None:
    """Send ``frames`` as one message without blocking (raises ``zmq.Again`` when the queue is full).

    Only the first frame can raise ``zmq.Again``: once it is queued, libzmq accepts the rest of the message."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        socket.send(frame, NOBLOCK if index == last else NOBLOCK | SNDMORE, copy=copy)


def recv_frames(socket: zmq.Socket) -> list[zmq.Frame]:
    """The frames of one message, not copied, without blocking (raises ``zmq.Again`` when none is there).

    A message arrives whole: once its first frame is readable, so are the others."""
    frame = socket.recv(NOBLOCK, copy=False)
    frames = [frame]
    while frame.more:
        frame = socket.recv(NOBLOCK, copy=False)
        frames.append(frame)
    return frames


def read_monitor_event(monitor: zmq.Socket) -> tuple[int, int]:
    """(event, value) of one socket-monitor message, without blocking (raises ``zmq.Again``).

    The two frames are parsed here (libzmq's zmq_socket_monitor: a 16-bit event and a 32-bit value, then
    the endpoint): pyzmq's ``zmq.utils.monitor`` would import asyncio, which costs start-up time."""
    frames = monitor.recv_multipart(NOBLOCK)
    return struct.unpack("=HI", frames[0][:6]) if len(frames[0]) >= 6 else (0, 0)


__all__ = ["EVENTS", "NOBLOCK", "POLLIN", "SNDMORE", "read_monitor_event", "recv_frames", "send_frames"]
