#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A TCP proxy between two migd peers (insecure mode) that cuts, truncates, corrupts or injects peer frames.
"""proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT MODE

Frames (docs/peer-protocol.md): 8-byte header u8 type (1 control JSON, 2 data), u8 flags, u16 reserved,
u32 big-endian length, then the payload. MODE, applied to the first connection only (later ones, e.g. the
source's resolve-query, pass):
  pass                 forward everything
  cut-after:TYPE       close both sides right after a control message of TYPE went through (either way)
  cut-data:N           close both sides once N data bytes went from the source to the destination
  truncate             drop the last data frame before data-end (the source's data-end is forwarded)
  corrupt              flip one byte in the first data frame's payload
  inject:KIND          instead of the source's "prepare", send a bad frame: oversize, badjson, unknowntype,
                       missingfield
Writes "ready" to stdout once listening and one line per action taken.
"""
import json
import socket
import struct
import sys
import threading

HDR = struct.Struct(">BBHI")


def addr(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def frames(sock):
    while True:
        h = recv_exact(sock, HDR.size)
        if h is None:
            return
        ftype, _, _, length = HDR.unpack(h)
        payload = recv_exact(sock, length) if length else b""
        if payload is None:
            return
        yield ftype, h, payload


def say(line):
    print(line, flush=True)


class Session:
    def __init__(self, client, target, mode):
        self.a = client
        self.b = socket.create_connection(target)
        self.mode, _, self.arg = mode.partition(":")
        self.data_sent = 0
        self.held = None  # truncate: the last data frame not yet forwarded
        self.lock = threading.Lock()
        self.dead = False

    def cut(self, why):
        with self.lock:
            if self.dead:
                return
            self.dead = True
        say("cut: " + why)
        for s in (self.a, self.b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def forward(self, src, dst, to_destination):
        try:
            for ftype, h, payload in frames(src):
                out = [h + payload]
                ctype = None
                if ftype == 1:
                    try:
                        ctype = json.loads(payload).get("type")
                    except ValueError:
                        pass
                if to_destination and ftype == 2:
                    if self.mode == "corrupt" and self.data_sent == 0 and payload:
                        p = bytearray(payload)
                        p[len(p) // 2] ^= 0x5A
                        out = [h + bytes(p)]
                        say("corrupted a data frame")
                    self.data_sent += len(payload)
                    if self.mode == "truncate":
                        prev, self.held = self.held, h + payload
                        out = [prev] if prev else []
                    if self.mode == "cut-data" and self.data_sent >= int(self.arg):
                        self.cut("after %d data bytes" % self.data_sent)
                        return
                if to_destination and ctype == "data-end" and self.mode == "truncate" and self.held:
                    say("dropped the last data frame (%d bytes)" % (len(self.held) - HDR.size))
                    self.held = None
                if to_destination and ctype == "prepare" and self.mode == "inject":
                    out = [bad_frame(self.arg, payload)]
                    say("injected " + self.arg)
                for o in out:
                    dst.sendall(o)
                if self.mode == "cut-after" and ctype == self.arg:
                    self.cut("after " + ctype)
                    return
        except OSError:
            pass
        self.cut("end of stream")


def bad_frame(kind, payload):
    if kind == "oversize":
        body = b" " * (64 * 1024 + 1)
        return HDR.pack(1, 0, 0, len(body)) + body
    if kind == "badjson":
        body = b'{"type": "prepare", "migration": '
    elif kind == "unknowntype":
        return HDR.pack(7, 0, 0, 2) + b"{}"
    elif kind == "missingfield":
        body = json.dumps({"type": "prepare"}).encode()
    else:
        raise SystemExit("unknown injection " + kind)
    return HDR.pack(1, 0, 0, len(body)) + body


def main():
    listen, target, mode = addr(sys.argv[1]), addr(sys.argv[2]), sys.argv[3]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(8)
    say("ready")
    first = True
    while True:
        c, _ = srv.accept()
        s = Session(c, target, mode if first else "pass")
        first = False
        threading.Thread(target=s.forward, args=(s.a, s.b, True), daemon=True).start()
        threading.Thread(target=s.forward, args=(s.b, s.a, False), daemon=True).start()


if __name__ == "__main__":
    main()
