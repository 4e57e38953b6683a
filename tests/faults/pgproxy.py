#!/usr/bin/env python3
"""pgproxy.py - a TCP proxy in front of PostgreSQL that loses the answer to a COMMIT.

usage: pgproxy.py LISTEN_PORT_FILE TARGET_HOST TARGET_PORT [DROPS]

Listens on a free loopback port (written to LISTEN_PORT_FILE) and forwards every
connection to the target. For the first DROPS (default 1) client messages that carry a
COMMIT statement, it forwards the COMMIT, lets the server run it for half a second,
then closes both sides without passing the server's answer on: the transaction is
committed, but the client cannot know it. Every later COMMIT goes through. Each drop is
logged on stdout as "dropped COMMIT answer N". (COMMIT is found in plain text only: over
TLS no answer is ever dropped.)

Blackhole switch: with PGPROXY_CONTROL=FILE in the environment, the proxy reads FILE
every 50 ms. Its first word sets the mode:
  forward    (or no file) forward everything
  hole       every connection open now stops forwarding for good, silently: its sockets
             stay open and nothing is read, written or closed, as behind a dead link.
             Connections made later are forwarded.
  hole-all   the same, and connections made while it lasts are accepted and held
             without ever reaching the server.
  refuse     connections open now go on; connections made while it lasts are closed
             at once, as by a server that takes no more (one connection of a worker
             lost, its reconnect refused).
Each change is logged on stdout as "mode MODE (N connections blackholed)".
"""
import os
import selectors
import socket
import sys
import threading
import time

lock = threading.Lock()
drops_left = 0
dropped = 0
mode = "forward"
live = set()  # threading.Event per forwarded connection: set = blackholed
held = []  # sockets kept open without forwarding


def take_drop():
    global drops_left, dropped
    with lock:
        if drops_left <= 0:
            return 0
        drops_left -= 1
        dropped += 1
        return dropped


def watch_control(path):
    global mode
    while True:
        try:
            with open(path) as f:
                words = f.read().split()
            want = words[0] if words else "forward"
        except OSError:
            want = "forward"
        if want not in ("forward", "hole", "hole-all", "refuse"):
            want = "forward"
        with lock:
            if want != mode:
                mode = want
                n = 0
                if mode in ("hole", "hole-all"):
                    for ev in live:
                        if not ev.is_set():
                            ev.set()
                            n += 1
                print(f"mode {mode} ({n} connections blackholed)", flush=True)
        time.sleep(0.05)


def pipe(client, server):
    sel = selectors.DefaultSelector()
    sel.register(client, selectors.EVENT_READ, server)
    sel.register(server, selectors.EVENT_READ, client)
    hole = threading.Event()
    with lock:
        live.add(hole)
    try:
        while True:
            if hole.is_set():
                # Neither read, nor write, nor close: both peers see a silent link.
                with lock:
                    held.extend((client, server))
                    live.discard(hole)
                sel.close()
                return
            for key, _ in sel.select(timeout=0.1):
                src, dst = key.fileobj, key.data
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
                # The worker sends COMMIT as a Parse (extended protocol) or a Query
                # message: either way the statement text ends in a NUL byte.
                if src is client and b"COMMIT\x00" in data:
                    n = take_drop()
                    if n:
                        time.sleep(0.5)  # the server commits; its answer is never passed on
                        print(f"dropped COMMIT answer {n}", flush=True)
                        return
    except OSError:
        return
    finally:
        with lock:
            live.discard(hole)
            keep = client in held
        for s in () if keep else (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def main():
    global drops_left
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    port_file, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    drops_left = int(sys.argv[4]) if len(sys.argv) == 5 else 1
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{lsock.getsockname()[1]}\n")
    os.rename(tmp, port_file)
    control = os.environ.get("PGPROXY_CONTROL")
    if control:
        threading.Thread(target=watch_control, args=(control,), daemon=True).start()
    while True:
        client, _ = lsock.accept()
        with lock:
            if mode == "hole-all":
                held.append(client)
                continue
            if mode == "refuse":
                client.close()
                continue
        try:
            server = socket.create_connection((host, port))
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, server), daemon=True).start()


if __name__ == "__main__":
    main()
