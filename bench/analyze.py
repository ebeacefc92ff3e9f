#!/usr/bin/env python3
"""Latency from a loopback capture, for bench/run.

    analyze.py s2x PCAP --sip-port 35060 --component-port 35347 --c2s-port 35222
    analyze.py x2s PCAP --sip-port 35090 --component-port 35347 --c2s-port 35222

Every benchmark message carries a tag in its body ("sb<n>." SIP -> XMPP, "xb<n>." XMPP ->
SIP). The tag is found at three points on the wire; the first packet holding it at each point
gives that point's kernel timestamp (retransmissions are ignored):

    s2x  in  = UDP to the gateway's SIP port (sipp's MESSAGE)
         out = TCP to Prosody's component port (the gateway's <message/>)
         end = TCP from Prosody's c2s port (delivery to the receiver)
         202 = UDP from the gateway's SIP port holding "202" (matched by sipp's Call-ID)
    x2s  beg = TCP to Prosody's c2s port (the sender's <message/>)
         in  = TCP from Prosody's component port (the stanza reaching the gateway)
         out = UDP to the outbound proxy port (the gateway's MESSAGE)

"gw" is out - in: the time spent in the gateway, socket to socket. "e2e" is end - in (s2x)
or out - beg (x2s): through the gateway and Prosody. "acc" (s2x) is 202 - in: how soon the
gateway answers. Prints JSON with counts per point and
p50/p99/max in microseconds.
"""

import argparse
import json
import re
import struct
import sys

TAG = re.compile(rb"([sx]b)(\d+)\.")
# sipp's Call-ID is "<call number>-<pid>@<ip>", and the call number is the body tag's.
ACCEPTED = re.compile(rb"^SIP/2\.0 202 .*?\r\nCall-ID: *(\d+)-", re.S | re.I)


def packets(path):
    """Yields (timestamp in s, proto, sport, dport, flow key, payload) for IPv4 TCP/UDP."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("%s: not a pcap file" % path)
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    frac = 1e-9 if nano else 1e-6
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20, 0: 4, 101: 0}.get(linktype)
    if link_len is None:
        raise ValueError("unsupported link type %d" % linktype)
    rec = struct.Struct(endian + "IIII")
    off = 24
    n = len(data)
    while off + 16 <= n:
        sec, sub, incl, _ = rec.unpack_from(data, off)
        off += 16
        pkt = data[off : off + incl]
        off += incl
        ip = pkt[link_len:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        proto = ip[9]
        seg = ip[ihl:total]
        if proto == 17 and len(seg) >= 8:
            sport, dport = struct.unpack_from(">HH", seg, 0)
            payload = seg[8:]
        elif proto == 6 and len(seg) >= 20:
            sport, dport = struct.unpack_from(">HH", seg, 0)
            payload = seg[(seg[12] >> 4) * 4 :]
        else:
            continue
        if payload:
            yield sec + sub * frac, proto, sport, dport, (proto, sport, dport), payload


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def stats(deltas):
    v = sorted(d * 1e6 for d in deltas)
    if not v:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(v),
        "p50": round(percentile(v, 50), 1),
        "p99": round(percentile(v, 99), 1),
        "max": round(v[-1], 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("direction", choices=["s2x", "x2s"])
    p.add_argument("pcap")
    p.add_argument("--sip-port", type=int, required=True)
    p.add_argument("--component-port", type=int, required=True)
    p.add_argument("--c2s-port", type=int, required=True)
    a = p.parse_args()

    if a.direction == "s2x":
        want = b"sb"

        def point(proto, sport, dport):
            if proto == 17 and dport == a.sip_port:
                return "in"
            if proto == 6 and dport == a.component_port:
                return "out"
            if proto == 6 and sport == a.c2s_port:
                return "end"
            return None
    else:
        want = b"xb"

        def point(proto, sport, dport):
            if proto == 6 and dport == a.c2s_port:
                return "beg"
            if proto == 6 and sport == a.component_port:
                return "in"
            if proto == 17 and dport == a.sip_port:
                return "out"
            return None

    seen = {"beg": {}, "in": {}, "out": {}, "end": {}, "202": {}}
    tails = {}
    for ts, proto, sport, dport, flow, payload in packets(a.pcap):
        if a.direction == "s2x" and proto == 17 and sport == a.sip_port:
            m = ACCEPTED.match(payload)
            if m and int(m.group(1)) not in seen["202"]:
                seen["202"][int(m.group(1))] = ts
            continue
        where = point(proto, sport, dport)
        if where is None:
            continue
        if proto == 6:
            # A tag may straddle two segments of a stream: search the previous tail too.
            data = tails.get(flow, b"") + payload
            tails[flow] = payload[-24:]
        else:
            data = payload
        first = seen[where]
        for m in TAG.finditer(data):
            if m.group(1) != want:
                continue
            tag = int(m.group(2))
            if tag not in first:
                first[tag] = ts

    def deltas(a_, b_):
        return [seen[b_][t] - seen[a_][t] for t in seen[a_] if t in seen[b_]]

    out = {k: len(v) for k, v in seen.items()}
    out["gw"] = stats(deltas("in", "out"))
    if a.direction == "s2x":
        out["e2e"] = stats(deltas("in", "end"))
        out["acc"] = stats(deltas("in", "202"))
    else:
        out["e2e"] = stats(deltas("beg", "out"))
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
