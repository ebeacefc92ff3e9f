#!/usr/bin/env python3
"""Counting XMPP peers for bench/presence/run. Standard library only.

  peer.py sink --port P --ready FILE --count-file FILE --out FILE [--max SECONDS]
      A fake XEP-0114 server: accepts sipjab's component connection, answers the stream
      header and <handshake/> (any secret), then counts "<presence" in everything sipjab
      writes. It measures the gateway alone, with no Prosody behind it.

  peer.py watch --port P --user U --password W --ready FILE --count-file FILE --out FILE
      [--domain xmpp.test] [--from-domain sip.xmpp.test] [--max SECONDS]
      A raw c2s client (no TLS, SASL PLAIN: loopback only): logs in, binds, sends initial
      presence, then counts presence stanzas from --from-domain ("@sip.xmpp.test" in the
      stream: each such stanza names it once, in its from). End to end through Prosody.

Both write the running count to --count-file (about every 0.1 s, for the waiting script),
and on SIGTERM/SIGINT or after --max seconds a JSON summary to --out: count, the wall-clock
times (time.time()) of the first and last counted bytes, and counts per whole second since
the first. Counting raw bytes instead of parsing keeps the peer far faster than the gateway.
"""

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time


class Counter:
    """Counts a marker across chunk boundaries and keeps first/last times."""

    def __init__(self, marker: bytes):
        self.marker = marker
        self.tail = b""
        self.count = 0
        self.first = None
        self.last = None
        self.per_second = {}

    def feed(self, data: bytes) -> None:
        buf = self.tail + data
        n = buf.count(self.marker)
        # Keep the bytes that could start a marker split across chunks.
        keep = len(self.marker) - 1
        self.tail = buf[-keep:] if keep else b""
        # The kept tail is shorter than the marker, so nothing is counted twice.
        if n:
            now = time.time()
            if self.first is None:
                self.first = now
            self.last = now
            self.count += n
            sec = int(now - self.first)
            self.per_second[sec] = self.per_second.get(sec, 0) + n

    def summary(self) -> dict:
        seconds = max(self.per_second) + 1 if self.per_second else 0
        return {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "per_second": [self.per_second.get(i, 0) for i in range(seconds)],
        }


async def read_until(reader, buf: bytearray, needle: bytes, limit=1 << 16) -> bytes:
    while needle not in buf:
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("closed while waiting for %r" % needle)
        buf.extend(chunk)
        if len(buf) > limit:
            raise ConnectionError("no %r in %d bytes" % (needle, len(buf)))
    i = buf.index(needle) + len(needle)
    head = bytes(buf[:i])
    del buf[:i]
    return head


async def report(counter: Counter, count_file: str, stop: asyncio.Event) -> None:
    last = -1
    while not stop.is_set():
        if counter.count != last:
            last = counter.count
            with open(count_file + ".tmp", "w") as f:
                f.write("%d\n" % last)
            # Atomic replace: the script never reads a half-written number.
            os.replace(count_file + ".tmp", count_file)
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass


async def sink(args) -> Counter:
    counter = Counter(b"<presence")
    stop = asyncio.Event()
    sid = [0]

    async def serve(reader, writer):
        sid[0] += 1
        buf = bytearray()
        try:
            await read_until(reader, buf, b"<stream:stream")
            await read_until(reader, buf, b">")
            writer.write(
                b"<?xml version='1.0'?><stream:stream "
                b"xmlns:stream='http://etherx.jabber.org/streams' "
                b"xmlns='jabber:component:accept' id='sink%d' from='%s'>"
                % (sid[0], args.domain.encode())
            )
            await writer.drain()
            await read_until(reader, buf, b"</handshake>")
            writer.write(b"<handshake/>")
            await writer.drain()
        except ConnectionError as e:
            print("sink: handshake failed: %s" % e, file=sys.stderr)
            writer.close()
            return

        async def keepalive():
            # sipjab drops a silent server after 2 x keepalive (30 s): any byte will do.
            while True:
                await asyncio.sleep(5)
                writer.write(b" ")
                await writer.drain()

        ka = asyncio.ensure_future(keepalive())
        counter.feed(bytes(buf))
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                counter.feed(data)
        finally:
            ka.cancel()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", args.port)
    open(args.ready, "w").close()
    rep = asyncio.ensure_future(report(counter, args.count_file, stop))
    await wait_stop(args.max)
    stop.set()
    await rep
    server.close()
    return counter


async def watch(args) -> Counter:
    counter = Counter(b"@" + args.from_domain.encode())
    stop = asyncio.Event()
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    buf = bytearray()
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" % args.domain
    ).encode()
    writer.write(header)
    await read_until(reader, buf, b"</stream:features>")
    token = base64.b64encode(b"\0" + args.user.encode() + b"\0" + args.password.encode())
    writer.write(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + token + b"</auth>"
    )
    # <success xmlns='...'/> or <failure ...>...</failure>.
    while b"<success" not in buf and b"</failure>" not in buf:
        chunk = await reader.read(4096)
        if not chunk:
            raise SystemExit("watch: closed during login: %r" % bytes(buf))
        buf.extend(chunk)
    got = bytes(buf)
    if b"<success" not in got:
        raise SystemExit("watch: login failed: %r" % got)
    await read_until(reader, buf, b">")
    writer.write(header)
    await read_until(reader, buf, b"</stream:features>")
    writer.write(
        b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>bench</resource></bind></iq>"
    )
    await read_until(reader, buf, b"</iq>")
    writer.write(b"<presence/>")
    await writer.drain()
    open(args.ready, "w").close()
    counter.feed(bytes(buf))
    rep = asyncio.ensure_future(report(counter, args.count_file, stop))

    async def pump():
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return
            counter.feed(data)

    task = asyncio.ensure_future(pump())
    await wait_stop(args.max)
    task.cancel()
    stop.set()
    await rep
    writer.close()
    return counter


async def wait_stop(max_seconds: float) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await asyncio.wait_for(done.wait(), max_seconds)
    except asyncio.TimeoutError:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("sink", "watch"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--ready", required=True)
        s.add_argument("--count-file", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--max", type=float, default=900)
        s.add_argument("--domain", default="sip.xmpp.test" if name == "sink" else "xmpp.test")
        if name == "watch":
            s.add_argument("--user", required=True)
            s.add_argument("--password", required=True)
            s.add_argument("--from-domain", default="sip.xmpp.test")
    args = p.parse_args()
    counter = asyncio.run(sink(args) if args.cmd == "sink" else watch(args))
    with open(args.out, "w") as f:
        json.dump(counter.summary(), f)


if __name__ == "__main__":
    main()
