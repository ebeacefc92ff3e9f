//! Header fields (RFC 3261 section 7.3 and 20): an ordered list of raw lines plus typed
//! accessors for the fields a gateway needs. Values are parsed when asked for, so a
//! message with one bad header still parses and can be answered with a 400.
//!
//! The top Via, From, To and Content-Type are read by every layer a request passes
//! (transport, checks, transaction key, response routing, the gateway core), so their
//! parsed form is kept after the first successful read (a received request's are read up
//! front, [`Headers::read_common`]), lent out by reference, and dropped by any change to
//! the lines. Each line also carries the number of its field among the ones read
//! often (`KNOWN`), found once when the line is made, so a lookup compares numbers.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::Error;
use crate::message::Method;
use crate::uri::{
    Host, Params, Uri, find_byte, is_token_char, parse_host_port, split_byte, split_quoted,
    trim_lws, write_port,
};

/// Compact forms of RFC 3261 7.3.3 (and RFC 3265/3515/4028 for o, u, r, b, x).
const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("f", "From"),
    ("t", "To"),
    ("v", "Via"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("e", "Content-Encoding"),
    ("o", "Event"),
    ("u", "Allow-Events"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("x", "Session-Expires"),
];

/// The long form of a header name (compact forms expanded), for comparisons.
#[inline]
pub const fn long_name(name: &str) -> &str {
    if name.len() == 1 {
        let mut i = 0;
        while i < COMPACT.len() {
            let (c, long) = COMPACT[i];
            if c.as_bytes()[0] == name.as_bytes()[0].to_ascii_lowercase() {
                return long;
            }
            i += 1;
        }
    }
    name
}

/// Whether two header names denote the same field (case and compact form ignored).
#[inline]
pub fn same_name(a: &str, b: &str) -> bool {
    long_name(a).eq_ignore_ascii_case(long_name(b))
}

/// The fields every request is searched for, numbered from 1 by their place here.
const KNOWN: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Content-Length",
    "Content-Type",
    "Max-Forwards",
    "Contact",
    "Expires",
    "Event",
    "Require",
    "Proxy-Require",
    "Subject",
];

/// The one field of [`KNOWN`] a long name can be (0: none): length, first and last letter
/// tell the known names apart, so one comparison then decides.
const fn candidate_field(long: &[u8]) -> u8 {
    let (Some(first), Some(last)) = (long.first(), long.last()) else {
        return 0;
    };
    match (long.len(), *first | 0x20, *last | 0x20) {
        (3, b'v', b'a') => 1,
        (4, b'f', b'm') => 2,
        (2, b't', b'o') => 3,
        (7, b'c', b'd') => 4,
        (4, b'c', b'q') => 5,
        (14, b'c', b'h') => 6,
        (12, b'c', b'e') => 7,
        (12, b'm', b's') => 8,
        (7, b'c', b't') => 9,
        (7, b'e', b's') => 10,
        (5, b'e', b't') => 11,
        (7, b'r', b'e') => 12,
        (13, b'p', b'e') => 13,
        (7, b's', b't') => 14,
        _ => 0,
    }
}

/// A field's number in [`KNOWN`] (compact forms included), 0 for any other field.
/// A `const fn`, so the [`Name`] constants cost nothing at run time.
const fn field_number(name: &str) -> u8 {
    let long = long_name(name).as_bytes();
    let candidate = candidate_field(long);
    if candidate == 0 {
        return 0;
    }
    let known = KNOWN[candidate as usize - 1].as_bytes();
    // The length matched; compare the letters without case (byte by byte: the slice
    // method is const only in a newer Rust than the crate's MSRV).
    let mut i = 0;
    while i < long.len() {
        if !long[i].eq_ignore_ascii_case(&known[i]) {
            return 0;
        }
        i += 1;
    }
    candidate
}

/// [`field_number`] for names met at run time (every line read or written): the usual
/// spelling is settled by one plain comparison.
fn field_number_now(name: &str) -> u8 {
    let long = long_name(name);
    match candidate_field(long.as_bytes()) {
        0 => 0,
        n => {
            let known = KNOWN[usize::from(n) - 1];
            if long == known || long.eq_ignore_ascii_case(known) {
                n
            } else {
                0
            }
        }
    }
}

/// One header line as received (folding undone) or as built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The name as written (may be a compact form). Borrowed when it is a literal or a
    /// known field written the usual way, as nearly all are: one allocation less a line.
    pub name: Cow<'static, str>,
    /// The value with surrounding whitespace removed and folded lines joined by one SP.
    pub value: String,
    /// [`field_number`] of the name.
    field: u8,
}

impl Header {
    /// A line of field `name`.
    fn new(name: Cow<'static, str>, value: String) -> Self {
        let field = field_number_now(&name);
        Self { name, value, field }
    }

    /// A line read from the wire: a known field's name written as [`KNOWN`] spells it
    /// is borrowed from there.
    pub(crate) fn parsed(name: &str, value: String) -> Self {
        let field = field_number_now(name);
        let name = match field {
            0 => Cow::Owned(name.to_owned()),
            n => match KNOWN[usize::from(n) - 1] {
                known if known == name => Cow::Borrowed(known),
                _ => Cow::Owned(name.to_owned()),
            },
        };
        Self { name, value, field }
    }

    /// Whether the line is of the field `name`.
    #[inline]
    pub(crate) fn is(&self, name: &Name<'_>) -> bool {
        match name.field {
            0 => self.field == 0 && same_name(&self.name, name.text),
            n => self.field == n,
        }
    }
}

/// A field name to look up, with its number among the often-read fields worked out once
/// for all the lines: at compile time for the constants below, which every lookup on the
/// hot path uses. A `&str` converts into one.
#[derive(Debug, Clone, Copy)]
pub struct Name<'n> {
    text: &'n str,
    field: u8,
}

impl<'n> Name<'n> {
    /// The name `text` (any case, compact forms included).
    pub const fn of(text: &'n str) -> Self {
        Self {
            text,
            field: field_number(text),
        }
    }

    /// The name as given.
    pub const fn text(&self) -> &'n str {
        self.text
    }
}

impl Name<'static> {
    /// Via.
    pub const VIA: Self = Self::of("Via");
    /// From.
    pub const FROM: Self = Self::of("From");
    /// To.
    pub const TO: Self = Self::of("To");
    /// Call-ID.
    pub const CALL_ID: Self = Self::of("Call-ID");
    /// CSeq.
    pub const CSEQ: Self = Self::of("CSeq");
    /// Content-Length.
    pub const CONTENT_LENGTH: Self = Self::of("Content-Length");
    /// Content-Type.
    pub const CONTENT_TYPE: Self = Self::of("Content-Type");
    /// Max-Forwards.
    pub const MAX_FORWARDS: Self = Self::of("Max-Forwards");
    /// Contact.
    pub const CONTACT: Self = Self::of("Contact");
    /// Expires.
    pub const EXPIRES: Self = Self::of("Expires");
    /// Event.
    pub const EVENT: Self = Self::of("Event");
    /// Require.
    pub const REQUIRE: Self = Self::of("Require");
    /// Proxy-Require.
    pub const PROXY_REQUIRE: Self = Self::of("Proxy-Require");
    /// Subject.
    pub const SUBJECT: Self = Self::of("Subject");
}

impl<'n> From<&'n str> for Name<'n> {
    fn from(text: &'n str) -> Self {
        Self {
            text,
            field: field_number_now(text),
        }
    }
}

/// All header lines in order, repeated names and comma lists both kept.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    lines: Vec<Header>,
    /// Boxed, and made on the first typed read: messages are moved around whole, and
    /// most built ones are never read.
    parsed: Slot<Box<Parsed>>,
}

/// Typed values already read from the lines: only successes are kept (an error is
/// rare and found again by parsing).
#[derive(Debug, Clone, Default)]
struct Parsed {
    /// Shared, so a response built from the request takes it without a copy.
    top_via: Slot<Option<Arc<Via>>>,
    from: Slot<Option<NameAddr>>,
    to: Slot<Option<NameAddr>>,
    content_type: Slot<Option<MediaType>>,
    /// The To-tag a request's final responses carry, made once: the answer needs it, and
    /// so does the check that a response is the plain answer (`Response::is_plain_answer_to`).
    answer_tag: Slot<String>,
}

/// One typed value: put in place while the headers are held mutably
/// ([`Headers::read_common`]), or made on the first read through a `OnceLock`, which keeps
/// a borrowed request usable across an `.await` in a spawned task. Filling the `OnceLock`
/// runs its `Once` and moves the value through two closures: about 350 instructions per
/// value, five values per received request.
#[derive(Debug, Clone)]
struct Slot<T> {
    ready: Option<T>,
    lazy: OnceLock<T>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            ready: None,
            lazy: OnceLock::new(),
        }
    }
}

impl<T> Slot<T> {
    fn get(&self) -> Option<&T> {
        self.ready.as_ref().or_else(|| self.lazy.get())
    }

    /// The value, or the parse's result (kept when it succeeded).
    fn cached(&self, parse: impl FnOnce() -> Result<T, Error>) -> Result<&T, Error> {
        if let Some(v) = self.get() {
            return Ok(v);
        }
        let v = parse()?;
        Ok(self.lazy.get_or_init(|| v))
    }

    /// The value, made by `make` if there is none yet.
    fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        match self.get() {
            Some(v) => v,
            None => self.lazy.get_or_init(make),
        }
    }

    fn get_mut(&mut self) -> Option<&mut T> {
        if self.ready.is_none() {
            self.ready = self.lazy.take();
        }
        self.ready.as_mut()
    }

    /// The value to change, a default one if there was none.
    fn get_mut_or_default(&mut self) -> &mut T
    where
        T: Default,
    {
        let value = self.take().unwrap_or_default();
        self.ready.insert(value)
    }

    fn take(&mut self) -> Option<T> {
        self.ready.take().or_else(|| self.lazy.take())
    }

    /// Replaces the value.
    fn put(&mut self, value: T) {
        self.lazy = OnceLock::new();
        self.ready = Some(value);
    }

    /// Keeps a parse's value, unless there is one already; an error is left for the reader.
    fn fill(&mut self, parsed: Result<T, Error>) {
        if let Ok(value) = parsed
            && self.get().is_none()
        {
            self.put(value);
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.lines == other.lines
    }
}

impl Eq for Headers {}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `lines` lines.
    pub fn with_capacity(lines: usize) -> Self {
        Self {
            lines: Vec::with_capacity(lines),
            parsed: Slot::default(),
        }
    }

    /// The bytes the lines take on the wire (`Name: value` and CRLF each).
    pub(crate) fn wire_len(&self) -> usize {
        self.lines
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum()
    }

    /// The lines, to change; what was parsed from them is forgotten.
    fn lines_mut(&mut self) -> &mut Vec<Header> {
        if self.parsed.get().is_some() {
            self.parsed = Slot::default();
        }
        &mut self.lines
    }

    /// What has been parsed so far.
    fn parsed(&self) -> &Parsed {
        self.parsed.get_or_init(Box::default)
    }

    /// What has been parsed so far, to add to.
    fn parsed_mut(&mut self) -> &mut Parsed {
        self.parsed.get_mut_or_default()
    }

    /// Reads the top Via, From, To and Content-Type now, while the headers are held
    /// mutably, so that later reads through `&self` find them without synchronisation:
    /// the checks, the transaction layer and the core read all four of every request
    /// received. A value that does not parse is left for its reader to find the error.
    pub fn read_common(&mut self) {
        let top_via = self.top_via_now();
        let from = self.name_addr(Name::FROM);
        let to = self.name_addr(Name::TO);
        let content_type = self.content_type_now();
        let parsed = self.parsed_mut();
        parsed.top_via.fill(top_via);
        parsed.from.fill(from);
        parsed.to.fill(to);
        parsed.content_type.fill(content_type);
    }

    /// Appends a line.
    pub fn push(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        let line = Header::new(name.into(), value.into());
        self.lines_mut().push(line);
    }

    /// Appends a line read from the wire.
    pub(crate) fn push_parsed(&mut self, name: &str, value: String) {
        let line = Header::parsed(name, value);
        self.lines_mut().push(line);
    }

    /// Inserts a line first (used for a new top Via).
    pub fn push_front(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        let line = Header::new(name.into(), value.into());
        self.lines_mut().insert(0, line);
    }

    /// Removes every line of that field.
    pub fn remove<'n>(&mut self, name: impl Into<Name<'n>>) {
        let name = name.into();
        self.lines_mut().retain(|h| !h.is(&name));
    }

    /// Replaces every line of that field by one line, keeping the first line's position.
    pub fn set<'n>(&mut self, name: impl Into<Name<'n>>, value: impl Into<String>) {
        let value = value.into();
        let field = name.into();
        let lines = self.lines_mut();
        match lines.iter().position(|h| h.is(&field)) {
            Some(i) => {
                lines[i].value = value;
                let mut seen = 0;
                lines.retain(|h| {
                    if h.is(&field) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            // A known name is borrowed, not copied: set_body sets two on every request built.
            None => self.push_parsed(field.text, value),
        }
    }

    /// All lines in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.lines.iter()
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are no lines.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The raw lines of one field, in order.
    pub fn lines<'a, 'n, N: Into<Name<'n>>>(
        &'a self,
        name: N,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n, N> {
        let name = name.into();
        self.lines
            .iter()
            .filter(move |h| h.is(&name))
            .map(|h| h.value.as_str())
    }

    /// The first raw line of a field.
    pub fn get<'n>(&self, name: impl Into<Name<'n>>) -> Option<&str> {
        self.lines(name).next()
    }

    /// Whether the field is present.
    pub fn contains<'n>(&self, name: impl Into<Name<'n>>) -> bool {
        self.get(name).is_some()
    }

    /// All values of a list field: lines in order, each split at commas outside quotes
    /// and `<>` (RFC 3261 7.3.1). Only for fields whose grammar is a comma list.
    pub fn values<'a, 'n>(&'a self, name: impl Into<Name<'n>>) -> Vec<&'a str> {
        self.list_items(name).map(trim_lws).collect()
    }

    /// The values of a list field as [`values`](Self::values) splits them, untrimmed and
    /// not collected.
    fn list_items<'a, 'n, N: Into<Name<'n>>>(
        &'a self,
        name: N,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n, N> {
        self.lines(name).flat_map(|l| split_quoted(l, b','))
    }

    /// The first value of a list field (see [`values`](Self::values)), without splitting
    /// the rest.
    pub fn first_value<'n>(&self, name: impl Into<Name<'n>>) -> Option<&str> {
        self.lines(name)
            .next()
            .and_then(|l| split_quoted(l, b',').next())
            .map(trim_lws)
    }

    /// The value of a single-valued field; present twice (as lines or as a comma list
    /// where the grammar has none) is an error (RFC 4475 3.3.8).
    pub fn single(&self, name: impl Into<Name<'static>>) -> Result<Option<&str>, Error> {
        let name = name.into();
        let mut lines = self.lines(name);
        let first = lines.next();
        if lines.next().is_some() {
            return Err(Error::Multiple(name.text));
        }
        Ok(first)
    }

    /// Like [`single`](Self::single), also rejecting a comma list (for name-addr fields).
    fn single_listless(&self, name: Name<'static>) -> Result<Option<&str>, Error> {
        let v = self.single(name)?;
        if let Some(v) = v
            && split_quoted(v, b',').nth(1).is_some()
        {
            return Err(Error::Multiple(name.text));
        }
        Ok(v)
    }

    /// All Via values, top first (RFC 3261 20.42), parsed on each call: the gateway reads
    /// only the top one ([`top_via`](Self::top_via)) and checks the rest
    /// ([`check_vias`](Self::check_vias)).
    pub fn vias(&self) -> Result<Vec<Via>, Error> {
        self.values(Name::VIA).into_iter().map(Via::parse).collect()
    }

    /// The top Via. A bad Via further down does not make this an error.
    pub fn top_via(&self) -> Result<Option<&Via>, Error> {
        self.parsed()
            .top_via
            .cached(|| self.top_via_now())
            .map(Option::as_deref)
    }

    fn top_via_now(&self) -> Result<Option<Arc<Via>>, Error> {
        let top = self.first_value(Name::VIA).map(Via::parse).transpose()?;
        Ok(top.map(Arc::new))
    }

    /// Checks that every Via parses, without keeping the list: only the top one is kept,
    /// for [`top_via`](Self::top_via).
    pub fn check_vias(&self) -> Result<(), Error> {
        self.top_via()?;
        self.list_items(Name::VIA)
            .skip(1)
            .try_for_each(|v| Via::parse(trim_lws(v)).map(drop))
    }

    /// The top Via moved out of what was parsed, to change and put back with
    /// [`set_top_via`](Self::set_top_via) without a copy. The lines stay as they are.
    pub fn take_top_via(&mut self) -> Result<Option<Via>, Error> {
        self.top_via()?;
        let Some(parsed) = self.parsed.get_mut() else {
            return Ok(None);
        };
        let top = parsed.top_via.take().flatten();
        Ok(top.map(|top| Arc::try_unwrap(top).unwrap_or_else(|shared| Via::clone(&shared))))
    }

    /// Takes `source`'s parsed top Via, if it was read: for a list whose Via lines are
    /// copies of `source`'s (a response's, RFC 3261 8.2.6).
    pub(crate) fn share_top_via(&mut self, source: &Self) {
        let Some(parsed) = source.parsed.get() else {
            return;
        };
        if let Some(top) = parsed.top_via.get().cloned() {
            self.parsed_mut().top_via.put(top);
        }
    }

    /// The To-tag of the answers to the request these are the lines of, made once.
    pub(crate) fn answer_tag(&self, make: impl FnOnce() -> String) -> &str {
        self.parsed().answer_tag.get_or_init(make)
    }

    /// Adds a new top Via line (a request we send), keeping it parsed for the transaction
    /// key.
    pub fn push_top_via(&mut self, via: Via) {
        self.push_front("Via", via.to_value());
        self.parsed_mut().top_via.put(Some(Arc::new(via)));
    }

    /// Replaces the top Via value (the rest of its line is kept), e.g. to add `received`.
    /// What was read of the other fields is kept.
    pub fn set_top_via(&mut self, via: Via) {
        if let Some(h) = self.lines.iter_mut().find(|h| h.is(&Name::VIA)) {
            let mut v = via.to_value();
            for p in split_quoted(&h.value, b',').skip(1) {
                v.push_str(", ");
                v.push_str(trim_lws(p));
            }
            h.value = v;
        } else {
            self.push_front("Via", via.to_value());
        }
        self.parsed_mut().top_via.put(Some(Arc::new(via)));
    }

    /// From (RFC 3261 20.20).
    pub fn from(&self) -> Result<Option<&NameAddr>, Error> {
        self.parsed()
            .from
            .cached(|| self.name_addr(Name::FROM))
            .map(Option::as_ref)
    }

    /// To (RFC 3261 20.39).
    pub fn to(&self) -> Result<Option<&NameAddr>, Error> {
        self.parsed()
            .to
            .cached(|| self.name_addr(Name::TO))
            .map(Option::as_ref)
    }

    fn name_addr(&self, name: Name<'static>) -> Result<Option<NameAddr>, Error> {
        self.single_listless(name)?
            .map(|v| NameAddr::parse(v, name.text))
            .transpose()
    }

    /// Call-ID (RFC 3261 20.8): `word [@ word]`, no whitespace.
    pub fn call_id(&self) -> Result<Option<&str>, Error> {
        let v = self.single(Name::CALL_ID)?;
        if let Some(v) = v
            && (v.is_empty() || v.bytes().any(|b| b <= b' ' || b == 0x7f))
        {
            return Err(header_err("Call-ID", "not a word"));
        }
        Ok(v)
    }

    /// CSeq (RFC 3261 20.16).
    pub fn cseq(&self) -> Result<Option<CSeq>, Error> {
        self.single(Name::CSEQ)?.map(CSeq::parse).transpose()
    }

    /// Max-Forwards (RFC 3261 20.22).
    pub fn max_forwards(&self) -> Result<Option<u32>, Error> {
        self.single(Name::MAX_FORWARDS)?
            .map(|v| parse_u32(v, "Max-Forwards"))
            .transpose()
    }

    /// Content-Length (RFC 3261 20.14). Framing uses its own stricter reading.
    pub fn content_length(&self) -> Result<Option<u32>, Error> {
        self.single(Name::CONTENT_LENGTH)?
            .map(|v| parse_u32(v, "Content-Length"))
            .transpose()
    }

    /// Content-Type (RFC 3261 20.15).
    pub fn content_type(&self) -> Result<Option<&MediaType>, Error> {
        self.parsed()
            .content_type
            .cached(|| self.content_type_now())
            .map(Option::as_ref)
    }

    fn content_type_now(&self) -> Result<Option<MediaType>, Error> {
        self.single(Name::CONTENT_TYPE)?
            .map(|v| MediaType::parse(v, "Content-Type"))
            .transpose()
    }

    /// Expires in seconds (RFC 3261 20.19).
    pub fn expires(&self) -> Result<Option<u32>, Error> {
        self.single(Name::EXPIRES)?
            .map(|v| parse_u32(v, "Expires"))
            .transpose()
    }

    /// Event (RFC 6665 8.2.1).
    pub fn event(&self) -> Result<Option<Event>, Error> {
        self.single(Name::EVENT)?.map(Event::parse).transpose()
    }

    /// Subject (RFC 3261 20.36), free text.
    pub fn subject(&self) -> Result<Option<&str>, Error> {
        self.single(Name::SUBJECT)
    }

    /// Contact (RFC 3261 20.10).
    pub fn contact(&self) -> Result<Option<Contact>, Error> {
        let values = self.values(Name::CONTACT);
        if values.is_empty() {
            return Ok(None);
        }
        if values.len() == 1 && values[0] == "*" {
            return Ok(Some(Contact::Star));
        }
        values
            .into_iter()
            .map(|v| NameAddr::parse(v, "Contact"))
            .collect::<Result<_, _>>()
            .map(|v| Some(Contact::List(v)))
    }

    /// Option tags of Require (RFC 3261 20.32).
    pub fn require(&self) -> Result<Vec<String>, Error> {
        self.tokens(Name::REQUIRE)
    }

    /// Option tags of Proxy-Require (RFC 3261 20.29).
    pub fn proxy_require(&self) -> Result<Vec<String>, Error> {
        self.tokens(Name::PROXY_REQUIRE)
    }

    /// Methods of Allow (RFC 3261 20.5).
    pub fn allow(&self) -> Result<Vec<Method>, Error> {
        self.tokens(Name::of("Allow"))
            .map(|v| v.iter().map(|m| Method::from_token(m)).collect())
    }

    /// Media ranges of Accept (RFC 3261 20.1). An empty Accept line is an empty list.
    pub fn accept(&self) -> Result<Vec<MediaType>, Error> {
        self.values("Accept")
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(|v| MediaType::parse(v, "Accept"))
            .collect()
    }

    fn tokens(&self, name: Name<'static>) -> Result<Vec<String>, Error> {
        self.list_items(name)
            .map(trim_lws)
            .filter(|v| !v.is_empty())
            .map(|v| {
                if v.bytes().all(is_token_char) {
                    Ok(v.to_owned())
                } else {
                    Err(header_err(name.text, format!("not a token: {v:?}")))
                }
            })
            .collect()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.lines.iter()
    }
}

fn header_err(name: &'static str, reason: impl Into<String>) -> Error {
    Error::Header {
        name,
        reason: reason.into(),
    }
}

fn parse_u32(v: &str, name: &'static str) -> Result<u32, Error> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(header_err(name, format!("not a number: {v:?}")));
    }
    v.parse()
        .map_err(|_| header_err(name, format!("out of range: {v}")))
}

/// One Via value (RFC 3261 20.42, RFC 3581 rport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token (`UDP`, `TCP`, `TLS`, or any other).
    pub transport: String,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`, ...).
    pub params: Params,
}

impl Via {
    /// Parses `SIP / 2.0 / transport sent-by *( ; via-params )`, LWS allowed around `/`.
    pub fn parse(v: &str) -> Result<Self, Error> {
        let bad = |r: &str| header_err("Via", format!("{r}: {v:?}"));
        let (head, params) = match split_byte(v, b';') {
            Some((h, p)) => (h, Params::parse(p).map_err(|e| bad(&e.to_string()))?),
            None => (v, Params::default()),
        };
        let Some((name, rest)) = split_byte(head, b'/') else {
            return Err(bad("no sent-protocol"));
        };
        let Some((version, rest)) = split_byte(rest, b'/') else {
            return Err(bad("no sent-protocol"));
        };
        if !trim_lws(name).eq_ignore_ascii_case("SIP") || trim_lws(version) != "2.0" {
            return Err(bad("not SIP/2.0"));
        }
        let mut words = rest.split_ascii_whitespace();
        let (Some(transport), Some(sent_by), None) = (words.next(), words.next(), words.next())
        else {
            return Err(bad("no sent-by"));
        };
        if !transport.bytes().all(is_token_char) {
            return Err(bad("bad transport"));
        }
        let (host, port) = parse_host_port(sent_by).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            transport: transport.to_owned(),
            host,
            port,
            params,
        })
    }

    /// A new Via for a request we send.
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Self {
        let mut params = Params::default();
        params.set("branch", Some(branch.to_owned()));
        Self {
            transport: transport.to_owned(),
            host,
            port,
            params,
        }
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter as an address.
    pub fn received(&self) -> Option<std::net::IpAddr> {
        self.params
            .get("received")
            .flatten()
            .and_then(|r| r.trim_matches(|c| c == '[' || c == ']').parse().ok())
    }

    /// `None`: no rport; `Some(None)`: rport asked for; `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The sent-by as written: `host[:port]`, for transaction keys.
    pub fn sent_by(&self) -> String {
        let mut sent_by = String::with_capacity(48);
        let _ = self.host.write_into(&mut sent_by);
        if let Some(p) = self.port {
            let _ = write_port(&mut sent_by, p);
        }
        sent_by
    }
}

impl Via {
    /// Writes the value as `Display` does, into any writer (see [`SipUri::write_into`]):
    /// every request received is stamped and written out again.
    ///
    /// [`SipUri::write_into`]: crate::SipUri::write_into
    pub fn write_into(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str("SIP/2.0/")?;
        out.write_str(&self.transport)?;
        out.write_str(" ")?;
        self.host.write_into(out)?;
        if let Some(p) = self.port {
            write_port(out, p)?;
        }
        self.params.write_into(out)
    }

    /// The value as a new string, without the formatter.
    fn to_value(&self) -> String {
        let mut value = String::with_capacity(96);
        let _ = self.write_into(&mut value);
        value
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_into(f)
    }
}

/// A `name-addr` or `addr-spec` with header parameters: From, To, Contact, Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted (quoted-pairs resolved).
    pub display_name: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, ...), not the URI's own.
    pub params: Params,
}

impl NameAddr {
    /// A bare `<uri>`.
    pub fn new(uri: Uri) -> Self {
        Self {
            display_name: None,
            uri,
            params: Params::default(),
        }
    }

    /// Parses one value of From, To, Contact (RFC 3261 20.10, 20.20, 20.39).
    pub fn parse(v: &str, name: &'static str) -> Result<Self, Error> {
        let bad = |r: String| header_err(name, r);
        let v = trim_lws(v);
        let (display_name, rest) = if let Some(q) = v.strip_prefix('"') {
            let (dn, after) = unquote(q).ok_or_else(|| bad("unterminated quoted string".into()))?;
            let after = trim_lws(after);
            if !after.starts_with('<') {
                return Err(bad("display name without <URI>".into()));
            }
            (Some(dn), after)
        } else if let Some(lt) = find_byte(v, b'<') {
            let dn = trim_lws(&v[..lt]);
            let words = || dn.split([' ', '\t']).filter(|w| !w.is_empty());
            if !words().all(|w| w.bytes().all(is_token_char)) {
                return Err(bad(format!("display name is not tokens: {dn:?}")));
            }
            let dn = (!dn.is_empty()).then(|| words().collect::<Vec<_>>().join(" "));
            (dn, &v[lt..])
        } else {
            (None, v)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            let (uri, after) = split_byte(inner, b'>').ok_or_else(|| bad("no closing >".into()))?;
            let after = trim_lws(after);
            let params = match after.strip_prefix(';') {
                Some(p) => p,
                None if after.is_empty() => "",
                None => return Err(bad(format!("junk after URI: {after:?}"))),
            };
            (uri, params)
        } else {
            // addr-spec: URI parameters would be header parameters (RFC 3261 20.10), and
            // `?`/`,` need the name-addr form (RFC 4475 3.1.2.13).
            let (uri, params) = split_byte(rest, b';').unwrap_or((rest, ""));
            if uri.contains('?') || uri.contains(',') {
                return Err(bad("URI with headers must be in <>".into()));
            }
            (trim_lws(uri), params)
        };
        let uri = Uri::parse(uri).map_err(|e| bad(e.to_string()))?;
        let params = if trim_lws(params).is_empty() {
            Params::default()
        } else {
            Params::parse(params).map_err(|e| bad(e.to_string()))?
        };
        Ok(Self {
            display_name,
            uri,
            params,
        })
    }

    /// The tag parameter (From/To).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dn) = &self.display_name {
            f.write_str("\"")?;
            let mut rest = dn.as_str();
            while let Some(i) = rest.find(['"', '\\']) {
                f.write_str(&rest[..i])?;
                f.write_str("\\")?;
                f.write_str(&rest[i..=i])?;
                rest = &rest[i + 1..];
            }
            f.write_str(rest)?;
            f.write_str("\" ")?;
        }
        f.write_str("<")?;
        fmt::Display::fmt(&self.uri, f)?;
        f.write_str(">")?;
        fmt::Display::fmt(&self.params, f)
    }
}

/// Reads a quoted string body after the opening quote; returns it and what follows.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// Contact: `*` or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (REGISTER removal of all bindings).
    Star,
    /// The addresses in order.
    List(Vec<NameAddr>),
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2**31 when we build it, up to 2**32-1 when received.
    pub seq: u32,
    /// The method, which must match the request line's.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(v: &str) -> Result<Self, Error> {
        let mut words = v.split_whitespace();
        let (Some(n), Some(m), None) = (words.next(), words.next(), words.next()) else {
            return Err(header_err("CSeq", format!("not `number method`: {v:?}")));
        };
        let seq = parse_u32(n, "CSeq")?;
        if !m.bytes().all(is_token_char) {
            return Err(header_err("CSeq", format!("bad method {m:?}")));
        }
        Ok(Self {
            seq,
            method: Method::from_token(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A media type or range: Content-Type and Accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// Type, lower-cased (`text`, `*`).
    pub mtype: String,
    /// Subtype, lower-cased (`plain`, `*`).
    pub subtype: String,
    /// Parameters (`charset`, `q`).
    pub params: Params,
}

impl MediaType {
    /// Parses `type/subtype *(;param)`.
    pub fn parse(v: &str, name: &'static str) -> Result<Self, Error> {
        let bad = || header_err(name, format!("bad media type {v:?}"));
        let (ts, params) = match split_byte(v, b';') {
            Some((t, p)) => (t, Params::parse(p).map_err(|_| bad())?),
            None => (v, Params::default()),
        };
        let (t, s) = split_byte(ts, b'/').ok_or_else(bad)?;
        let (t, s) = (trim_lws(t), trim_lws(s));
        let tok = |x: &str| !x.is_empty() && x.bytes().all(is_token_char);
        if !tok(t) || !tok(s) {
            return Err(bad());
        }
        Ok(Self {
            mtype: t.to_ascii_lowercase(),
            subtype: s.to_ascii_lowercase(),
            params,
        })
    }

    /// The charset parameter, unquoted.
    pub fn charset(&self) -> Option<&str> {
        self.params
            .get("charset")
            .flatten()
            .map(|c| c.trim_matches('"'))
    }

    /// `type/subtype` without parameters.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.mtype, self.subtype)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.mtype, self.subtype, self.params)
    }
}

/// Event (RFC 6665): package name and parameters (`id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Event package, e.g. `presence`, as written.
    pub package: String,
    /// Parameters such as `id`.
    pub params: Params,
}

impl Event {
    /// Parses `event-type *( ; event-param )`.
    pub fn parse(v: &str) -> Result<Self, Error> {
        let (p, params) = match split_byte(v, b';') {
            Some((p, rest)) => (
                trim_lws(p),
                Params::parse(rest).map_err(|e| header_err("Event", e.to_string()))?,
            ),
            None => (trim_lws(v), Params::default()),
        };
        if p.is_empty() || !p.bytes().all(is_token_char) {
            return Err(header_err("Event", format!("bad package {p:?}")));
        }
        Ok(Self {
            package: p.to_owned(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(n.to_string(), *v);
        }
        h
    }

    #[test]
    fn field_numbers_name_the_known_fields_only() {
        // The compile-time and the run-time lookups agree.
        let field_number = |name: &str| {
            let n = field_number(name);
            assert_eq!(field_number_now(name), n, "{name}");
            n
        };
        for (i, known) in KNOWN.iter().enumerate() {
            let n = i as u8 + 1;
            assert_eq!(field_number(known), n, "{known}");
            assert_eq!(field_number(&known.to_ascii_uppercase()), n, "{known}");
            assert_eq!(field_number(&known.to_ascii_lowercase()), n, "{known}");
        }
        for (compact, long) in COMPACT {
            assert_eq!(field_number(compact), field_number(long), "{compact}");
        }
        for other in [
            "",
            "X",
            "Viz",
            "Toe",
            "Call-IT",
            "Contacts",
            "Supported",
            "Allow",
        ] {
            assert_eq!(field_number(other), 0, "{other}");
        }
    }

    #[test]
    fn only_sp_and_htab_are_white_space_around_tokens() {
        // RFC 3261 25.1: LWS is SP and HTAB (lines are unfolded by then); a no-break space
        // or a form feed is not a token character, so it is not trimmed away either.
        let h = hs(&[("Require", " 100rel ,\ttimer\t"), ("Allow", "MESSAGE")]);
        assert_eq!(h.require().unwrap(), ["100rel", "timer"]);
        for odd in ["\u{a0}100rel", "100rel\u{c}", "\u{2003}timer"] {
            assert!(hs(&[("Require", odd)]).require().is_err(), "{odd:?}");
            assert!(hs(&[("Event", odd)]).event().is_err(), "{odd:?}");
            let to = format!("{odd} <sip:bob@example.com>");
            assert!(hs(&[("To", &to)]).to().is_err(), "{odd:?}");
        }
        let h = hs(&[("To", "Bob \t Smith <sip:bob@example.com>")]);
        let to = h.to().unwrap().unwrap();
        assert_eq!(to.display_name.as_deref(), Some("Bob Smith"));
    }

    #[test]
    fn parsed_values_follow_changes_to_the_lines() {
        let mut h = hs(&[
            (
                "Via",
                "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b",
            ),
            ("To", "<sip:bob@example.com>"),
            ("Content-Type", "text/plain"),
        ]);
        assert_eq!(h.top_via().unwrap().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(h.to().unwrap().unwrap().tag(), None);
        assert_eq!(h.content_type().unwrap().unwrap().subtype, "plain");
        let mut via = h.top_via().unwrap().unwrap().clone();
        via.params.set("received", Some("192.0.2.1".into()));
        h.set_top_via(via);
        h.set("To", "<sip:bob@example.com>;tag=t");
        h.set("Content-Type", "text/html");
        let top = h.top_via().unwrap().unwrap();
        assert_eq!(top.received(), "192.0.2.1".parse().ok());
        assert_eq!(h.vias().unwrap().len(), 2);
        assert_eq!(h.to().unwrap().unwrap().tag(), Some("t"));
        assert_eq!(h.content_type().unwrap().unwrap().subtype, "html");
        h.push("To", "<sip:carol@example.com>");
        assert!(h.to().is_err(), "two To lines");
        let copy = h.clone();
        assert_eq!(copy, h);
        assert!(copy.to().is_err());
    }

    #[test]
    fn values_read_up_front_read_as_on_demand() {
        let lines = [
            ("Via", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport"),
            ("From", "\"A\" <sip:alice@example.com>;tag=1"),
            ("To", "<sip:bob@example.com>"),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ];
        let lazy = hs(&lines);
        let mut ready = hs(&lines);
        ready.read_common();
        assert_eq!(ready.top_via().unwrap(), lazy.top_via().unwrap());
        assert_eq!(ready.from().unwrap(), lazy.from().unwrap());
        assert_eq!(ready.to().unwrap(), lazy.to().unwrap());
        assert_eq!(ready.content_type().unwrap(), lazy.content_type().unwrap());
        // A new top Via keeps what was read of the rest; a changed line drops it.
        let mut via = ready.top_via().unwrap().unwrap().clone();
        via.params.set("received", Some("192.0.2.1".into()));
        ready.set_top_via(via);
        assert_eq!(ready.from().unwrap(), lazy.from().unwrap());
        ready.set("From", "<sip:carol@example.com>;tag=2");
        assert_eq!(ready.from().unwrap().unwrap().tag(), Some("2"));
        assert!(ready.top_via().unwrap().unwrap().received().is_some());

        // A value that does not parse is found bad by its reader, as without.
        let mut bad = hs(&[("From", "<sip:alice@example.com"), ("To", "<sip:b@c>")]);
        bad.read_common();
        assert!(bad.from().is_err());
        assert!(bad.to().unwrap().is_some());
        assert!(bad.top_via().unwrap().is_none());
    }

    #[test]
    fn vias_in_order_across_lines_and_commas() {
        let h = hs(&[
            (
                "v",
                "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP [::1]:5070;rport",
            ),
            (
                "Via",
                "SIP / 2.0 / UDP 192.0.2.1:5060;branch=z9hG4bK3;received=192.0.2.9",
            ),
        ]);
        let v = h.vias().unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].branch(), Some("z9hG4bK1"));
        assert_eq!(v[1].rport(), Some(None));
        assert_eq!(v[1].port, Some(5070));
        assert_eq!(v[2].received(), Some("192.0.2.9".parse().unwrap()));
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
    }

    #[test]
    fn set_top_via_keeps_the_rest() {
        let mut h = hs(&[("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b")]);
        let mut top = h.top_via().unwrap().unwrap().clone();
        top.params.set("received", Some("192.0.2.1".into()));
        h.set_top_via(top);
        assert_eq!(
            h.get("via"),
            Some("SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1, SIP/2.0/UDP b")
        );
    }

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse(r#""Bell, \"Alex\"" <sip:a@b>;tag=1"#, "From").unwrap();
        assert_eq!(a.display_name.as_deref(), Some("Bell, \"Alex\""));
        assert_eq!(a.tag(), Some("1"));
        let b = NameAddr::parse("sip:a@b;tag=2", "To").unwrap();
        assert_eq!(b.tag(), Some("2"));
        assert!(b.uri.as_sip().unwrap().params.is_empty());
        let c = NameAddr::parse(r#""caller"<sip:c@d>"#, "From").unwrap();
        assert_eq!(c.display_name.as_deref(), Some("caller"));
        assert!(NameAddr::parse(r#""unterminated <sip:a@b>"#, "To").is_err());
        assert!(NameAddr::parse("Bell, Alex <sip:a@b>", "From").is_err());
        assert!(NameAddr::parse("sip:a@b?Route=x", "Contact").is_err());
        assert!(NameAddr::parse("< sip:a@b >", "To").is_err());
        let round = NameAddr::parse(&a.to_string(), "From").unwrap();
        assert_eq!(round, a);
        assert_eq!(a.to_string(), r#""Bell, \"Alex\"" <sip:a@b>;tag=1"#);
        let slash = NameAddr::parse(r#""a\\b\"" <sip:a@b>"#, "To").unwrap();
        assert_eq!(slash.display_name.as_deref(), Some("a\\b\""));
        assert_eq!(slash.to_string(), r#""a\\b\"" <sip:a@b>"#);
    }

    #[test]
    fn scalars_and_lists() {
        let h = hs(&[
            ("CSeq", "4294967295 MESSAGE"),
            ("c", "text/plain; charset=\"UTF-8\""),
            ("Accept", "text/plain, application/pidf+xml"),
            ("Allow", "MESSAGE,OPTIONS"),
            ("o", "presence;id=1"),
            ("i", "abc@host"),
            ("Max-Forwards", "70"),
        ]);
        assert_eq!(h.cseq().unwrap().unwrap().seq, u32::MAX);
        assert_eq!(h.content_type().unwrap().unwrap().charset(), Some("UTF-8"));
        assert_eq!(h.accept().unwrap().len(), 2);
        assert_eq!(h.allow().unwrap(), vec![Method::Message, Method::Options]);
        assert_eq!(h.event().unwrap().unwrap().package, "presence");
        assert_eq!(h.call_id().unwrap(), Some("abc@host"));
        assert_eq!(h.max_forwards().unwrap(), Some(70));
        assert!(CSeq::parse("4294967296 MESSAGE").is_err());
        let dup = hs(&[("Call-ID", "a"), ("i", "b")]);
        assert!(matches!(dup.call_id(), Err(Error::Multiple("Call-ID"))));
    }
}
