#!/usr/bin/env python3
"""Raw XMPP c2s peers for bench/run: a counting receiver and a paced sender.

    xmpp_peer.py recv --port P --user U --password W --ready FILE --count-file FILE
        logs in, sends <presence/>, writes FILE when ready, then counts "<message" in the
        byte stream and rewrites --count-file every 100 ms; stops on SIGTERM/SIGINT or after
        --max seconds, and prints {"messages": N} as JSON.
    xmpp_peer.py send --port P --user U --password W --to JID --rate R --count N
        logs in and writes N pre-built <message type='chat'> stanzas to JID at R per second
        (tagged "xb<n>" in the body, bench/analyze.py finds them on the wire by it); prints
        {"sent": N, "seconds": S, "errors_back": E} as JSON.

Plain TCP with SASL PLAIN, which bench/prosody.cfg.lua.in allows on loopback. No XML
parser on the hot path: the receiver only counts a byte pattern, so it is not the
bottleneck at several thousand messages per second.
"""

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time

DOMAIN = "xmpp.test"
NS_STREAM = (
    "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" % DOMAIN
).encode()
PATTERN = b"<message"


async def read_until(reader, buf, marker, timeout=10.0):
    """Reads until `marker` is in buf; returns (before-and-including marker, rest)."""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("waiting for %r, got %r" % (marker, buf[-300:]))
        chunk = await asyncio.wait_for(reader.read(65536), left)
        if not chunk:
            raise ConnectionError("stream closed; got %r" % buf[-300:])
        buf += chunk
    i = buf.index(marker) + len(marker)
    return buf[:i], buf[i:]


async def login(port, user, password, resource):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(NS_STREAM)
    _, rest = await read_until(reader, b"", b"</stream:features>")
    cred = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    writer.write(
        (
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % cred
        ).encode()
    )
    got, rest = await read_until(reader, rest, b"ns:xmpp-sasl")
    got2, rest = await read_until(reader, rest, b">")
    if b"<success" not in got + got2:
        raise PermissionError("SASL failed: %r" % (got + got2 + rest))
    writer.write(NS_STREAM)
    _, rest = await read_until(reader, b"", b"</stream:features>")
    writer.write(
        (
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>%s</resource></bind></iq>" % resource
        ).encode()
    )
    _, rest = await read_until(reader, rest, b"</iq>")
    return reader, writer, rest


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def recv(args):
    reader, writer, rest = await login(args.port, args.user, args.password, "bench-recv")
    writer.write(b"<presence/>")
    await writer.drain()
    count = rest.count(PATTERN)
    tail = rest[-(len(PATTERN) - 1) :]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_atomic(args.count_file, "0\n")
    write_atomic(args.ready, "ready\n")
    # The counts in --count-file are what bench/run polls; rewrite it on a timer, not per
    # chunk, so that file I/O stays off the receive path.
    deadline = time.monotonic() + args.max

    async def reporter():
        while not stop.is_set():
            write_atomic(args.count_file, "%d\n" % count)
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass
            if time.monotonic() > deadline:
                stop.set()

    rep = asyncio.create_task(reporter())
    stopper = asyncio.create_task(stop.wait())
    while not stop.is_set():
        read = asyncio.create_task(reader.read(1 << 18))
        done, _ = await asyncio.wait({read, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if read not in done:
            read.cancel()
            break
        chunk = read.result()
        if not chunk:
            break
        data = tail + chunk
        count += data.count(PATTERN)
        tail = data[-(len(PATTERN) - 1) :]
    stop.set()
    await rep
    write_atomic(args.count_file, "%d\n" % count)
    await close_stream(writer)
    print(json.dumps({"messages": count}))


async def close_stream(writer):
    """Ends the XML stream and the connection, without waiting long for a slow server."""
    writer.write(b"</stream:stream>")
    try:
        await asyncio.wait_for(writer.drain(), 1)
        writer.close()
    except Exception:
        pass


async def send(args):
    reader, writer, rest = await login(args.port, args.user, args.password, "bench-send")
    errors_back = rest.count(PATTERN)

    async def drain_incoming():
        # Error replies (if any) come back on this stream; read them so Prosody never
        # blocks on us, and count them.
        nonlocal errors_back
        tail = b""
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                return
            data = tail + chunk
            errors_back += data.count(PATTERN)
            tail = data[-(len(PATTERN) - 1) :]

    incoming = asyncio.create_task(drain_incoming())
    body = "Hello from the sipjab benchmark."
    stanzas = [
        (
            "<message to='%s' type='chat' id='x%d'><body>xb%d. %s</body></message>"
            % (args.to, n, n, body)
        ).encode()
        for n in range(1, args.count + 1)
    ]
    sent = 0
    start = time.monotonic()
    # Paced in small batches: every tick, write what is due by now.
    while sent < args.count:
        due = min(args.count, int((time.monotonic() - start) * args.rate) + 1)
        if due > sent:
            writer.write(b"".join(stanzas[sent:due]))
            sent = due
            await writer.drain()
        await asyncio.sleep(0.0005)
    seconds = time.monotonic() - start
    await asyncio.sleep(args.linger)
    incoming.cancel()
    await close_stream(writer)
    print(json.dumps({"sent": sent, "seconds": round(seconds, 3), "errors_back": errors_back}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("recv", "send"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--user", required=True)
        s.add_argument("--password", required=True)
    r = sub.choices["recv"]
    r.add_argument("--ready", required=True)
    r.add_argument("--count-file", required=True)
    r.add_argument("--max", type=float, default=600)
    s = sub.choices["send"]
    s.add_argument("--to", required=True)
    s.add_argument("--rate", type=float, required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--linger", type=float, default=1.0, help="seconds to wait for error replies")
    args = p.parse_args()
    try:
        asyncio.run(recv(args) if args.cmd == "recv" else send(args))
    except (TimeoutError, ConnectionError, PermissionError) as e:
        print("xmpp_peer.py %s: %s" % (args.cmd, e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
