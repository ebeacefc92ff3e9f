//! The floor relay for `bench/floor/run`: a SIP <-> XMPP "gateway" that does nothing but the
//! I/O every gateway must do per message, so that its CPU per message is the least any gateway
//! can cost in the `bench/run` harness (sipp, Prosody 0.12, the c2s peers, all on loopback).
//!
//! ```text
//! floor s2x --secret S [--component ADDR] [--domain D] [--sip ADDR]
//!           [--from JID] [--to JID]
//! floor x2s --secret S [--component ADDR] [--domain D] [--sip ADDR] --proxy ADDR
//!           [--from SIP-URI] [--to SIP-URI] [--lazy-answers]
//! ```
//!
//! Both modes first log in to the XMPP server as an XEP-0114 component (stream header, then
//! `<handshake>` with the lowercase hex SHA-1 of stream id + secret), print `ready` on stdout,
//! and then:
//!
//! - `s2x`: for each datagram on the SIP socket, send back a `202 Accepted` made of the
//!   request's Via, From, To (with a tag added), Call-ID and CSeq lines (sipp matches it by
//!   Call-ID), and write one `<message type='chat'/>` to the component stream carrying the
//!   request's body: the shape and size of sipjab's stanza (about 190 bytes). That is one
//!   `recvfrom`, one `sendto` and one `write` per message.
//! - `x2s`: for each `<message ... </message>` read from the component stream, send one SIP
//!   MESSAGE to `--proxy` with the stanza's body (the shape and size of sipjab's, about 370
//!   bytes), and receive the proxy's 200 on a second thread. That is a `read` (or less, when
//!   several stanzas come in one segment), one `sendto` and one `recvfrom` per message.
//!   With `--lazy-answers`, no thread: the socket is non-blocking and the 200s that are in
//!   its buffer are read before each wait for stanzas. A 200 to a MESSAGE only stops its
//!   retransmissions (RFC 3261 Timer E, 500 ms), so it can wait for the next stanza; the
//!   relay then wakes once per message instead of twice, for one more system call (the
//!   `recvfrom` that finds the buffer empty). The read of stanzas times out after 100 ms
//!   so that the last 200s, and `floor-stats`, do not wait for ever.
//!
//! A datagram `floor-stats` on the SIP socket makes it print `stats messages=N user_ns=U` on
//! stdout: the messages relayed so far and the wall time spent between system calls on
//! them, timed with `Instant`: the user-space part of the relay's CPU. It is measured here
//! because the kernel's utime/stime cannot tell it: with tick-based accounting they divide
//! the exact run time in the ratio of the clock ticks that found the process in user or
//! kernel mode, and for a process that runs microseconds at a time that ratio rests on few
//! ticks (the same step came out all utime in one run and all stime in another). Timing
//! costs two clock reads (about 50 ns) per message.
//!
//! No parsing beyond finding header lines and `</message>` boundaries, no transactions, no
//! retransmission handling (a retransmitted MESSAGE is relayed twice), no allocation per
//! message. It exists to be measured, never to be run for real.
//!
//! Why blocking std sockets, one thread per input: a thread blocked in `recvfrom` or `read`
//! is the cheapest way to wait. The kernel wakes it with the data ready and the one system
//! call it made returns it. Any event loop costs more: `epoll_wait` is a system call of its
//! own on every wake-up, followed by the read it announced, and a runtime adds its task
//! hand-offs on top. So the figures of this program are a floor for sipjab's, not a model of
//! it. What they keep is what no design avoids on loopback: each `sendto`/`write` runs the
//! receiver's network stack in the sender's context, and at low rates each message wakes the
//! process on its own.
//!
//! std only (no crates), one file: `rustc -O --edition 2024 -o floor floor.rs`, and
//! `rustc --test --edition 2024 -o floor-test floor.rs` for the tests (SHA-1 against the
//! FIPS 180 vectors, the 202 and the stanza builders).

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Messages relayed, and nanoseconds spent on them between system calls (one writer: the
/// relaying thread).
static MESSAGES: AtomicU64 = AtomicU64::new(0);
static USER_NS: AtomicU64 = AtomicU64::new(0);

/// What the bench script sends to the SIP socket to have the counts printed.
const STATS: &[u8] = b"floor-stats";

/// Command-line settings; the defaults are `bench/floor/run`'s.
struct Args {
    mode: String,
    component: String,
    domain: String,
    secret: String,
    sip: String,
    proxy: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// x2s: read the 200s without waiting, before each wait for stanzas, not on a thread.
    lazy_answers: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: floor s2x|x2s --secret S [options]")?;
    if mode != "s2x" && mode != "x2s" {
        return Err(format!("unknown mode {mode} (s2x or x2s)"));
    }
    let mut args = Args {
        mode,
        component: "127.0.0.1:55347".into(),
        domain: "sip.xmpp.test".into(),
        secret: String::new(),
        sip: "127.0.0.1:55060".into(),
        proxy: None,
        from: None,
        to: None,
        lazy_answers: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--lazy-answers" {
            args.lazy_answers = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--component" => args.component = value,
            "--domain" => args.domain = value,
            "--secret" => args.secret = value,
            "--sip" => args.sip = value,
            "--proxy" => args.proxy = Some(value),
            "--from" => args.from = Some(value),
            "--to" => args.to = Some(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.secret.is_empty() {
        return Err("--secret is required".into());
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::exit(2);
        }
    };
    let result = if args.mode == "s2x" {
        s2x(&args)
    } else {
        x2s(&args)
    };
    if let Err(e) = result {
        eprintln!("floor {}: {e}", args.mode);
        std::process::exit(1);
    }
}

/// A number that differs between runs, for ids and tags.
fn nonce() -> u32 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    t ^ std::process::id().rotate_left(16)
}

fn ready() -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()
}

fn print_stats() -> io::Result<()> {
    let mut out = io::stdout().lock();
    let (n, ns) = (MESSAGES.load(Relaxed), USER_NS.load(Relaxed));
    writeln!(out, "stats messages={n} user_ns={ns}")?;
    out.flush()
}

/// Counts one message and the time since `since`.
fn tally(since: Instant) {
    let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
    USER_NS.store(USER_NS.load(Relaxed) + ns, Relaxed);
    MESSAGES.store(MESSAGES.load(Relaxed) + 1, Relaxed);
}

// --- SIP -> XMPP ------------------------------------------------------------------------

fn s2x(args: &Args) -> io::Result<()> {
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| format!("alice@{}", args.domain));
    let to = args.to.as_deref().unwrap_or("romeo@xmpp.test");
    let sock = UdpSocket::bind(&args.sip)?;
    let (mut link, _) = component_login(&args.component, &args.domain, &args.secret)?;
    ready()?;
    let nonce = nonce();
    let mut buf = vec![0u8; 65536];
    let mut answer = Vec::with_capacity(1024);
    let mut stanza = Vec::with_capacity(1024);
    let mut n: u64 = 0;
    loop {
        let (len, src) = sock.recv_from(&mut buf)?;
        let start = Instant::now();
        let req = &buf[..len];
        if !req.starts_with(b"MESSAGE ") {
            if req == STATS {
                print_stats()?;
            }
            continue; // only MESSAGEs come in this harness; anything else is dropped
        }
        n += 1;
        // Both built before either is sent, so that one interval covers the user-space work.
        answer.clear();
        accepted(req, nonce, &mut answer);
        stanza.clear();
        chat_stanza(&from, to, nonce, n, body(req), &mut stanza);
        tally(start);
        sock.send_to(&answer, src)?;
        link.write_all(&stanza)?;
    }
}

/// `SIP/2.0 202 Accepted` for `req`, appended to `out`.
fn accepted(req: &[u8], nonce: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"SIP/2.0 202 Accepted\r\n");
    for line in header_lines(req) {
        let name = header_name(line);
        let is = |full: &str, compact: &str| {
            name.eq_ignore_ascii_case(full.as_bytes())
                || name.eq_ignore_ascii_case(compact.as_bytes())
        };
        if is("Via", "v") || is("From", "f") || is("Call-ID", "i") || is("CSeq", "CSeq") {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        } else if is("To", "t") {
            out.extend_from_slice(line);
            if !contains(line, b";tag=") {
                // Not a valid header if it ended in an unbracketed URI with parameters; the
                // bench's To is always <...>.
                let _ = write!(out, ";tag=fl{nonce:08x}");
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// The chat stanza sipjab would write for this body, appended to `out`.
fn chat_stanza(from: &str, to: &str, nonce: u32, n: u64, body: &[u8], out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "<message xmlns='jabber:component:accept' from='{from}' id='floor-{nonce:08x}-{n}' \
         to='{to}' type='chat'><body>"
    );
    // Escaped as minidom does (sipjab's serialiser), CR included.
    for &b in body {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'\r' => out.extend_from_slice(b"&#xd;"),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(b"</body></message>");
}

/// The header lines of a SIP message, without the start line (folded lines are not joined).
fn header_lines(msg: &[u8]) -> impl Iterator<Item = &[u8]> {
    let head = &msg[..find(msg, b"\r\n\r\n").unwrap_or(msg.len())];
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn header_name(line: &[u8]) -> &[u8] {
    let name = &line[..line.iter().position(|&b| b == b':').unwrap_or(line.len())];
    name.trim_ascii()
}

fn body(msg: &[u8]) -> &[u8] {
    find(msg, b"\r\n\r\n").map_or(&[], |i| &msg[i + 4..])
}

// --- XMPP -> SIP ------------------------------------------------------------------------

fn x2s(args: &Args) -> io::Result<()> {
    let proxy: SocketAddr = args
        .proxy
        .as_deref()
        .ok_or_else(|| io::Error::other("x2s needs --proxy"))?
        .parse()
        .map_err(io::Error::other)?;
    let from = args
        .from
        .as_deref()
        .unwrap_or("sip:juliet*xmpp.test@jabber.sip.test");
    let to = args.to.as_deref().unwrap_or("sip:alice@127.0.0.1");
    let sock = UdpSocket::bind(&args.sip)?;
    let local = sock.local_addr()?;
    let mut answer = vec![0u8; 65536];
    if args.lazy_answers {
        sock.set_nonblocking(true)?;
    } else {
        // The 200s: a thread blocked in recvfrom, the cheapest wait std offers (it has no
        // poll). Its user-space work (a comparison) is not timed.
        let answers = sock.try_clone()?;
        let mut answer = std::mem::take(&mut answer);
        std::thread::spawn(move || {
            while let Ok((len, _)) = answers.recv_from(&mut answer) {
                if &answer[..len] == STATS && print_stats().is_err() {
                    return;
                }
            }
        });
    }
    let (mut link, rest) = component_login(&args.component, &args.domain, &args.secret)?;
    if args.lazy_answers {
        link.set_read_timeout(Some(Duration::from_millis(100)))?;
    }
    ready()?;
    let nonce = nonce();
    let mut request = Vec::with_capacity(1024);
    let mut n: u64 = 0;
    // buf[start..end] is read and not yet consumed; zeroed once, never per read.
    let mut buf = vec![0u8; 1 << 18];
    let mut start = 0;
    let mut end = rest.len();
    buf[..end].copy_from_slice(&rest);
    loop {
        let mut since = Instant::now();
        while let Some(i) = find(&buf[start..end], b"</message>") {
            let stop = start + i + b"</message>".len();
            n += 1;
            request.clear();
            let body = stanza_body(&buf[start..stop]);
            message_request(from, to, local, nonce, n, body, &mut request);
            tally(since);
            sock.send_to(&request, proxy)?;
            since = Instant::now();
            start = stop;
        }
        if contains(&buf[start..end], b"</stream:stream>") {
            return Ok(());
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end == buf.len() {
            buf.resize(2 * end, 0); // a stanza larger than the buffer
        }
        if args.lazy_answers {
            read_answers(&sock, &mut answer)?;
        }
        let got = match link.read(&mut buf[end..]) {
            Err(e) if args.lazy_answers && is_timeout(&e) => continue,
            r => r?,
        };
        if got == 0 {
            return Ok(());
        }
        end += got;
    }
}

/// Reads what the non-blocking socket holds: the 200s, and `floor-stats`.
fn read_answers(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match sock.recv_from(buf) {
            Ok((len, _)) if &buf[..len] == STATS => print_stats()?,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// A read timeout is `WouldBlock` on Unix and `TimedOut` on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A SIP MESSAGE like sipjab's (same headers, same order), appended to `out`. The body is the
/// stanza's text as it is on the wire: the bench's bodies hold no XML entities.
fn message_request(
    from: &str,
    to: &str,
    local: SocketAddr,
    nonce: u32,
    n: u64,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    let _ = write!(
        out,
        "MESSAGE {to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKfloor{nonce:08x}.{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <{from}>;tag=fl{nonce:08x}\r\n\
         To: <{to}>\r\n\
         Call-ID: {n}-{nonce:08x}@floor\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

/// The text between `<body>` and `</body>` (empty without one).
fn stanza_body(stanza: &[u8]) -> &[u8] {
    let Some(open) = find(stanza, b"<body") else {
        return &[];
    };
    let Some(gt) = stanza[open..].iter().position(|&b| b == b'>') else {
        return &[];
    };
    let text = &stanza[open + gt + 1..];
    &text[..find(text, b"</body>").unwrap_or(0)]
}

// --- XEP-0114 ---------------------------------------------------------------------------

/// Connects and handshakes; returns the stream and what was read after the handshake.
fn component_login(addr: &str, domain: &str, secret: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut link = TcpStream::connect(addr)?;
    link.set_nodelay(true)?; // as sipjab's link does
    write!(
        link,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    )?;
    let mut buf = Vec::new();
    let header_end = read_until(&mut link, &mut buf, |b| {
        let s = find(b, b"<stream:stream")?;
        Some(s + b[s..].iter().position(|&c| c == b'>')? + 1)
    })?;
    let id = stream_id(&buf[..header_end]).ok_or_else(|| io::Error::other("no stream id"))?;
    let mut input = id.to_vec();
    input.extend_from_slice(secret.as_bytes());
    write!(link, "<handshake>{}</handshake>", hex(&sha1(&input)))?;
    buf.drain(..header_end);
    let end = read_until(&mut link, &mut buf, |b| {
        [
            &b"<handshake/>"[..],
            b"</handshake>",
            b"<stream:error",
            b"</stream:stream>",
        ]
        .iter()
        .find_map(|m| find(b, m).map(|i| i + m.len()))
    })?;
    if !contains(&buf[..end], b"handshake") {
        return Err(io::Error::other(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(&buf)
        )));
    }
    buf.drain(..end);
    Ok((link, buf))
}

/// Reads into `buf` until `done` finds an end in it.
fn read_until(
    link: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = done(buf) {
            return Ok(end);
        }
        let n = link.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "stream closed: {}",
                String::from_utf8_lossy(buf)
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The `id` attribute of the `<stream:stream ...>` start tag in `header`.
fn stream_id(header: &[u8]) -> Option<&[u8]> {
    let tag = &header[find(header, b"<stream:stream")?..];
    let mut at = 0;
    while let Some(i) = find(&tag[at..], b"id=") {
        let i = at + i;
        // " id=", not "sid=" or "xml:id="-like names.
        if i > 0 && tag[i - 1].is_ascii_whitespace() {
            let quote = *tag.get(i + 3)?;
            let value = &tag[i + 4..];
            return Some(&value[..value.iter().position(|&b| b == quote)?]);
        }
        at = i + 3;
    }
    None
}

// --- SHA-1 (FIPS 180-4), for the handshake only -----------------------------------------

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..20 => ((b & c) | (!b & d), 0x5A82_7999),
                20..40 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..60 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// --- bytes ------------------------------------------------------------------------------

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_fips_180_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    const REQ: &[u8] = b"MESSAGE sip:romeo*xmpp.test@jabber.sip.test SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:35070;branch=z9hG4bK-1-1-0;rport\r\n\
        From: <sip:alice@127.0.0.1>;tag=1SIPpTag001\r\n\
        To: <sip:romeo*xmpp.test@jabber.sip.test>\r\n\
        Call-ID: 1-12536@127.0.0.1\r\n\
        CSeq: 1 MESSAGE\r\n\
        Max-Forwards: 70\r\n\
        Content-Type: text/plain;charset=UTF-8\r\n\
        Content-Length:    9\r\n\
        \r\n\
        sb1. <&>\r\n";

    #[test]
    fn accepted_copies_the_dialog_headers() {
        let mut out = Vec::new();
        accepted(REQ, 0xab, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SIP/2.0 202 Accepted\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:35070;branch=z9hG4bK-1-1-0;rport\r\n\
             From: <sip:alice@127.0.0.1>;tag=1SIPpTag001\r\n\
             To: <sip:romeo*xmpp.test@jabber.sip.test>;tag=fl000000ab\r\n\
             Call-ID: 1-12536@127.0.0.1\r\n\
             CSeq: 1 MESSAGE\r\n\
             Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn chat_stanza_escapes_the_body() {
        let mut out = Vec::new();
        chat_stanza("a@sip.x", "r@x", 1, 7, body(REQ), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<message xmlns='jabber:component:accept' from='a@sip.x' id='floor-00000001-7' \
             to='r@x' type='chat'><body>sb1. &lt;&amp;&gt;&#xd;\n</body></message>"
        );
    }

    #[test]
    fn message_request_carries_the_stanza_body() {
        let stanza = b"<message from='j@x/r' to='a@sip.x' type='chat' id='x1'>\
            <body xml:lang='en'>xb1. hi</body></message>";
        let mut out = Vec::new();
        let local = "127.0.0.1:5060".parse().unwrap();
        message_request(
            "sip:j@x",
            "sip:a@b",
            local,
            2,
            3,
            stanza_body(stanza),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;"));
        assert!(text.contains("\r\nCall-ID: 3-00000002@floor\r\n"));
        assert!(text.ends_with("\r\nContent-Length: 7\r\n\r\nxb1. hi"));
    }

    #[test]
    fn stream_id_skips_other_id_like_attributes() {
        let header = b"<?xml version='1.0'?><stream:stream xmlns:stream='s' xml:lang='en' \
            sid='no' id=\"3BF96D32\" from='c'>";
        assert_eq!(stream_id(header), Some(&b"3BF96D32"[..]));
        assert_eq!(stream_id(b"<stream:stream from='c'>"), None);
    }
}
