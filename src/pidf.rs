//! PIDF presence documents <-> XMPP `<presence/>`, pure (RFC 3863, RFC 4480, RFC 8048 §6).
//!
//! - [`parse`] reads an `application/pidf+xml` body (RFC 3863) as SIP UAs send it in PUBLISH
//!   and NOTIFY: tuples with `<basic>`, `<contact priority>`, `<note xml:lang>`, `<timestamp>`;
//!   RPID activities (RFC 4480) in `<dm:person>` (RFC 4479 data model) or, from pre-data-model
//!   clients, in a tuple; the `<show xmlns='jabber:client'>` that RFC 8048 §6.2 recommends.
//!   Bad input is a [`PidfError`] that knows its SIP answer; nothing here panics on input.
//! - [`Pidf::to_presence`] maps it to the presence the gateway sends from the SIP user's JID
//!   (RFC 8048 §6.3, Table 2).
//! - [`ContactPresence`] keeps the available resources of one XMPP contact and writes the
//!   PIDF for a NOTIFY (RFC 8048 §6.2, Table 1): one tuple per resource. [`closed_document`]
//!   is the document sent when a subscription ends (RFC 8048 §5.3.3).
//!
//! Choices where RFC 8048 is silent:
//!
//! - Priority: XMPP `p` in 0..=127 becomes `floor(p * 1000 / 127)` thousandths, so 0 -> 0,
//!   1 -> 0.007 (the RFC's own example), 127 -> 1, every step distinct. A SIP q-value `t`
//!   thousandths becomes `ceil(t * 127 / 1000)`, the exact inverse on those 128 values, and
//!   monotonic elsewhere (0.5 -> 64, 0.8 -> 102). An absent priority is RFC 3863's "lowest"
//!   and becomes XMPP 0. Negative XMPP priorities are not mapped (RFC 8048 MUST NOT): the
//!   `<contact>` carries no `priority`.
//! - Several SIP tuples: `open` wins over `closed`; among those, the highest `<contact
//!   priority>` (absent lowest), then document order. Its `<note>`s become `<status/>`, else
//!   the presence-level `<note>`s, else the `<dm:person>` `<dm:note>`s.
//! - Show: the chosen tuple's `<show>`, else RPID activities (see [`Activity::show`]: busy,
//!   on-the-phone, meeting and the like -> `dnd`; away and meals -> `away`; vacation, holiday,
//!   sleeping, travel -> `xa`; the strongest wins, dnd > xa > away), else the RFC 3863
//!   example's `<im:im>` (`busy` -> dnd, `away` -> away), else none.
//! - XMPP -> SIP: the `<dm:person>` gets `<rpid:activities>` from the most available
//!   resource's show (dnd -> busy, away and xa -> away) because common SIP clients (Linphone,
//!   Jitsi, Bria) read RPID rather than the `jabber:client` show. `<contact>` is the entity the
//!   caller gives. No `<timestamp>`: the core has no clock.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use encoding_rs::Encoding;
use minidom::Element;
use minidom::rxml::{Namespace, RawReader};
use minidom::tree_builder::TreeBuilder;
use sipjab_sip::Rejection;
use xmpp_parsers::message::Lang;
use xmpp_parsers::presence::{Presence, Priority, Show, Type};

use crate::sip_to_xmpp::{reject, xml_safe};

/// The media type of a PIDF body, for `Content-Type` and `Accept`.
pub const CONTENT_TYPE: &str = "application/pidf+xml";

/// The largest PIDF body accepted. Real documents are well under 4 KiB; anything much larger
/// is a mistake or an attack, and is refused before parsing.
pub const MAX_BODY: usize = 64 * 1024;

/// How deep elements may nest. PIDF with RPID needs about 5; the bound keeps a hostile body
/// from costing a deep recursion when its tree is dropped.
pub const MAX_DEPTH: usize = 32;

/// How many resources one contact may have in a [`ContactPresence`], so a misbehaving server
/// cannot grow a NOTIFY without bound.
pub const MAX_RESOURCES: usize = 32;

/// PIDF namespace (RFC 3863 §4.4).
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// PIDF data model namespace, for `<dm:person>` (RFC 4479 §4).
pub const NS_DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// RPID namespace, for `<rpid:activities>` (RFC 4480 §5).
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
/// The CPIM IM status namespace of the RFC 3863 §6 example (`<im:im>busy</im:im>`).
pub const NS_PIDF_IM: &str = "urn:ietf:params:xml:ns:pidf:im";
/// The namespace RFC 8048 §6.2 gives the `<show/>` it puts in PIDF.
pub const NS_JABBER_CLIENT: &str = "jabber:client";

/// RFC 3863 §4.1.1 spells the namespace with a trailing colon once; accept that spelling too.
const NS_PIDF_COLON: &str = "urn:ietf:params:xml:ns:pidf:";

/// Why a PIDF body was refused. The message fits a SIP reason phrase: one short line, and the
/// parts taken from the input are cut and cleaned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PidfError {
    /// The body is over [`MAX_BODY`] bytes; it was not parsed.
    #[error("PIDF body too large ({0} bytes, limit {MAX_BODY})")]
    TooLarge(usize),
    /// The body is empty or only whitespace.
    #[error("empty PIDF body")]
    Empty,
    /// The body is not text in its declared encoding (UTF-8 unless the XML declaration says
    /// otherwise).
    #[error("PIDF body is not valid {0}")]
    Encoding(String),
    /// The XML declaration names an encoding that is not known.
    #[error("PIDF body declares an unknown encoding {0}")]
    UnknownEncoding(String),
    /// The body is not well-formed XML, or uses what the parser refuses (a DTD, entities
    /// other than the five predefined ones, an undeclared prefix).
    #[error("PIDF body is not well-formed XML: {0}")]
    Xml(String),
    /// Elements nest deeper than [`MAX_DEPTH`].
    #[error("PIDF body nests elements more than {MAX_DEPTH} deep")]
    TooDeep,
    /// The root element is not `<presence>` in the PIDF namespace.
    #[error("not a PIDF document (root element {0})")]
    NotPidf(String),
    /// A `<basic>` holds something other than `open` or `closed` (RFC 3863 §4.1.4).
    #[error("unknown PIDF basic status {0} (open or closed expected)")]
    UnknownBasic(String),
    /// The document has tuples but none has a `<basic>`, so availability is unknown.
    #[error("no PIDF tuple has a basic status")]
    NoBasic,
    /// An element marked `mustUnderstand` (RFC 3863 §4.2.3) that the gateway does not
    /// understand, so the document must not be used.
    #[error("PIDF element {0} is marked mustUnderstand")]
    MustUnderstand(String),
}

impl PidfError {
    /// The SIP status for a request carrying this body: 413 when too large, else 400.
    pub fn sip_status(&self) -> u16 {
        match self {
            Self::TooLarge(_) => 413,
            _ => 400,
        }
    }

    /// The answer to a PUBLISH or NOTIFY whose body this is.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::TooLarge(_) => reject(413, format!("Request Entity Too Large ({self})")),
            _ => reject(self.sip_status(), format!("Bad Request ({self})")),
        }
    }
}

/// `<basic>` (RFC 3863 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basic {
    /// The contact address accepts communication.
    Open,
    /// It does not.
    Closed,
}

/// A `<contact priority>` q-value (RFC 3863 §4.1.5): 0 to 1 with at most three decimals,
/// held as thousandths so it compares and prints exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QValue(u16);

impl QValue {
    /// The highest q-value, 1.
    pub const MAX: Self = Self(1000);

    /// A q-value of `thousandths / 1000`; `None` above 1000.
    pub fn from_thousandths(thousandths: u16) -> Option<Self> {
        (thousandths <= 1000).then_some(Self(thousandths))
    }

    /// The value in thousandths, 0..=1000.
    pub fn thousandths(self) -> u16 {
        self.0
    }

    /// Reads a q-value leniently: digits after the third decimal are dropped, as some UAs
    /// write more. `None` for anything not in 0..=1.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let int: u16 = match int.trim_start_matches('0') {
            "" => 0,
            "1" => 1,
            _ => return None,
        };
        let mut thousandths = int * 1000;
        for (digit, scale) in frac.bytes().zip([100, 10, 1]) {
            thousandths += u16::from(digit - b'0') * scale;
        }
        if int == 1 && frac.bytes().any(|b| b != b'0') {
            return None;
        }
        Self::from_thousandths(thousandths)
    }

    /// The q-value for an XMPP priority (RFC 8048 §6.2): `floor(p * 1000 / 127)`, so 0 -> 0,
    /// 1 -> 0.007, 127 -> 1 and each priority distinct. Negative priorities MUST NOT be mapped.
    pub fn from_xmpp(priority: i8) -> Option<Self> {
        let p = u32::try_from(priority).ok()?;
        // p <= 127, so the quotient is at most 1000.
        u16::try_from(p * 1000 / 127).ok().map(Self)
    }

    /// The XMPP priority for a q-value: `ceil(q * 127)`, the inverse of [`QValue::from_xmpp`].
    pub fn to_xmpp(self) -> i8 {
        let p = (u32::from(self.0) * 127).div_ceil(1000);
        // p <= 127 because self.0 <= 1000.
        i8::try_from(p).unwrap_or(i8::MAX)
    }
}

impl fmt::Display for QValue {
    /// RFC 3863 qvalue syntax: `0`, `1`, or `0.` and up to three digits, no trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("0"),
            1000.. => f.write_str("1"),
            t => {
                let digits = format!("{t:03}");
                write!(f, "0.{}", digits.trim_end_matches('0'))
            }
        }
    }
}

/// A `<note>` (RFC 3863 §4.1.6) or `<dm:note>` (RFC 4479).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Its `xml:lang`, if any.
    pub lang: Option<String>,
    /// Its text, trimmed.
    pub text: String,
}

/// An RPID activity (RFC 4480 §3.2). The set is closed in the RFC; `Other` holds the text of
/// `<rpid:other>` or the name of an element from a later revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // The names are RFC 4480's.
pub enum Activity {
    Appointment,
    Away,
    Breakfast,
    Busy,
    Dinner,
    Holiday,
    InTransit,
    LookingForWork,
    Meal,
    Meeting,
    OnThePhone,
    Performance,
    PermanentAbsence,
    Playing,
    Presentation,
    Shopping,
    Sleeping,
    Spectator,
    Steering,
    Travel,
    Tv,
    Unknown,
    Vacation,
    Working,
    Worship,
    Other(String),
}

impl Activity {
    /// The activity an RPID element name stands for.
    pub fn from_name(name: &str) -> Self {
        match name {
            "appointment" => Self::Appointment,
            "away" => Self::Away,
            "breakfast" => Self::Breakfast,
            "busy" => Self::Busy,
            "dinner" => Self::Dinner,
            "holiday" => Self::Holiday,
            "in-transit" => Self::InTransit,
            "looking-for-work" => Self::LookingForWork,
            "meal" => Self::Meal,
            "meeting" => Self::Meeting,
            "on-the-phone" => Self::OnThePhone,
            "performance" => Self::Performance,
            "permanent-absence" => Self::PermanentAbsence,
            "playing" => Self::Playing,
            "presentation" => Self::Presentation,
            "shopping" => Self::Shopping,
            "sleeping" => Self::Sleeping,
            "spectator" => Self::Spectator,
            "steering" => Self::Steering,
            "travel" => Self::Travel,
            "tv" => Self::Tv,
            "unknown" => Self::Unknown,
            "vacation" => Self::Vacation,
            "working" => Self::Working,
            "worship" => Self::Worship,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The XMPP show this activity suggests. Not in RFC 8048; the gateway's choice:
    ///
    /// - `dnd` when interrupting is unwelcome: busy, on-the-phone, meeting, appointment,
    ///   performance, presentation, steering (driving);
    /// - `away` for a short absence: away, breakfast, dinner, meal, in-transit, shopping;
    /// - `xa` for a long one: vacation, holiday, sleeping, travel, permanent-absence;
    /// - none for the rest (working, playing, tv, unknown...): they say nothing of
    ///   reachability.
    pub fn show(&self) -> Option<Show> {
        match self {
            Self::Busy
            | Self::OnThePhone
            | Self::Meeting
            | Self::Appointment
            | Self::Performance
            | Self::Presentation
            | Self::Steering => Some(Show::Dnd),
            Self::Away
            | Self::Breakfast
            | Self::Dinner
            | Self::Meal
            | Self::InTransit
            | Self::Shopping => Some(Show::Away),
            Self::Vacation
            | Self::Holiday
            | Self::Sleeping
            | Self::Travel
            | Self::PermanentAbsence => Some(Show::Xa),
            _ => None,
        }
    }
}

/// A `<tuple>` (RFC 3863 §4.1.2): one way of reaching the presentity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tuple {
    /// Its `id`; RFC 3863 requires one, the gateway does not need it.
    pub id: Option<String>,
    /// `<status><basic>`; `None` when the status has only extensions.
    pub basic: Option<Basic>,
    /// The RFC 8048 `<show xmlns='jabber:client'>` in the status (an unknown value is ignored).
    pub show: Option<Show>,
    /// RPID activities put in the tuple or its status by pre-data-model clients.
    pub activities: Vec<Activity>,
    /// `<im:im>` in the status, as in the RFC 3863 §6 example.
    pub im: Option<String>,
    /// The `<contact>` URI.
    pub contact: Option<String>,
    /// `<contact priority>`; `None` when absent or malformed (both "lowest").
    pub priority: Option<QValue>,
    /// The tuple's `<note>`s.
    pub notes: Vec<Note>,
    /// `<timestamp>`, unchecked: RFC 8048 does not map it.
    pub timestamp: Option<String>,
}

/// A `<dm:person>` (RFC 4479 §3.1): the human rather than a device or service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Person {
    /// RPID activities (RFC 4480 §3.2).
    pub activities: Vec<Activity>,
    /// `<dm:note>`s.
    pub notes: Vec<Note>,
}

/// A parsed PIDF document: what the gateway needs of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pidf {
    /// The `entity` attribute (a `pres:` or `sip:` URI).
    pub entity: Option<String>,
    /// The tuples, in document order.
    pub tuples: Vec<Tuple>,
    /// Presence-level `<note>`s.
    pub notes: Vec<Note>,
    /// The `<dm:person>` elements.
    pub persons: Vec<Person>,
}

/// Parses an `application/pidf+xml` body.
///
/// Lenient where the gateway does not care (a missing `entity` or tuple `id`, unknown
/// elements, a malformed priority, elements out of schema order, `standalone="no"`, a BOM,
/// a non-UTF-8 encoding the declaration names). Strict where availability is at stake: an
/// unknown `<basic>`, tuples without any `<basic>`, a `mustUnderstand` extension. A document
/// with no tuple at all is valid and means "closed" (the neutral state).
pub fn parse(body: &[u8]) -> Result<Pidf, PidfError> {
    if body.len() > MAX_BODY {
        return Err(PidfError::TooLarge(body.len()));
    }
    let text = decode(body)?;
    let root = build_tree(&text)?;
    if !is_pidf(&root, "presence") {
        return Err(PidfError::NotPidf(clean(&format!(
            "{} in namespace {}",
            root.name(),
            if root.ns().is_empty() {
                "(none)".to_owned()
            } else {
                root.ns()
            }
        ))));
    }
    check_must_understand(&root)?;
    let mut pidf = Pidf {
        entity: root.attr("entity").map(str::to_owned),
        ..Pidf::default()
    };
    for child in root.children() {
        if is_pidf(child, "tuple") {
            pidf.tuples.push(parse_tuple(child)?);
        } else if is_pidf(child, "note") {
            pidf.notes.extend(note(child));
        } else if child.is("person", NS_DATA_MODEL) {
            pidf.persons.push(parse_person(child));
        }
    }
    if !pidf.tuples.is_empty() && pidf.tuples.iter().all(|t| t.basic.is_none()) {
        return Err(PidfError::NoBasic);
    }
    Ok(pidf)
}

/// The body as UTF-8 text without its XML declaration. rxml accepts only UTF-8 and
/// `standalone="yes"`, while Java-based clients (Jitsi) write `standalone="no"`, so the
/// declaration is read here and dropped.
fn decode(body: &[u8]) -> Result<String, PidfError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let body = body.trim_ascii_start();
    let (encoding, rest) = match body.strip_prefix(b"<?xml") {
        Some(decl) if decl.first().is_some_and(u8::is_ascii_whitespace) => {
            let end = decl
                .windows(2)
                .position(|w| w == b"?>")
                .ok_or_else(|| PidfError::Xml("unterminated XML declaration".into()))?;
            (
                declared_encoding(&decl[..end]),
                decl[end + 2..].trim_ascii_start(),
            )
        }
        _ => (None, body),
    };
    let text = match encoding {
        None => std::str::from_utf8(rest)
            .map_err(|_| PidfError::Encoding("UTF-8".into()))?
            .to_owned(),
        Some(label) => {
            let enc = Encoding::for_label(label.as_bytes())
                .ok_or_else(|| PidfError::UnknownEncoding(clean(&label)))?;
            enc.decode_without_bom_handling_and_without_replacement(rest)
                .ok_or_else(|| PidfError::Encoding(enc.name().to_owned()))?
                .into_owned()
        }
    };
    if text.trim().is_empty() {
        return Err(PidfError::Empty);
    }
    Ok(text)
}

/// The `encoding` pseudo-attribute of an XML declaration, if any.
fn declared_encoding(decl: &[u8]) -> Option<String> {
    let decl = std::str::from_utf8(decl).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = rest[1..].split(quote).next()?;
    Some(value.to_owned())
}

/// Builds the element tree, refusing deep nesting before it is built (minidom's own tree
/// walks, including drop, recurse).
fn build_tree(text: &str) -> Result<Element, PidfError> {
    let mut reader = RawReader::new(text.as_bytes());
    // An empty default namespace, so that a root without `xmlns` is reported as "not PIDF"
    // rather than as a namespace error.
    let mut builder = TreeBuilder::new().with_prefixes_stack(vec![String::new().into()]);
    loop {
        let event = reader
            .read()
            .map_err(|e| PidfError::Xml(clean(&e.to_string())))?
            .ok_or_else(|| PidfError::Xml("unexpected end of document".into()))?;
        builder
            .process_event(event)
            .map_err(|e| PidfError::Xml(clean(&e.to_string())))?;
        if builder.depth() > MAX_DEPTH {
            return Err(PidfError::TooDeep);
        }
        if let Some(root) = builder.root.take() {
            return Ok(root);
        }
    }
}

fn is_pidf(el: &Element, name: &str) -> bool {
    el.is(name, NS_PIDF) || el.is(name, NS_PIDF_COLON)
}

/// The namespaces whose elements the gateway reads; `mustUnderstand` on them is honoured.
fn understood(el: &Element) -> bool {
    [
        NS_PIDF,
        NS_PIDF_COLON,
        NS_DATA_MODEL,
        NS_RPID,
        NS_PIDF_IM,
        NS_JABBER_CLIENT,
    ]
    .iter()
    .any(|ns| el.has_ns(*ns))
}

/// RFC 3863 §4.2.3: a document with a `mustUnderstand` extension the recipient does not
/// understand must not be used. The attribute is read in any namespace (the schema puts it in
/// the PIDF one, some writers leave it unqualified).
fn check_must_understand(root: &Element) -> Result<(), PidfError> {
    let mut stack = vec![root];
    while let Some(el) = stack.pop() {
        let marked = el.attrs().iter().any(|((_, name), value)| {
            name.as_str() == "mustUnderstand" && matches!(value.trim(), "true" | "1")
        });
        if marked && !understood(el) {
            return Err(PidfError::MustUnderstand(clean(el.name())));
        }
        stack.extend(el.children());
    }
    Ok(())
}

fn parse_tuple(el: &Element) -> Result<Tuple, PidfError> {
    let mut tuple = Tuple {
        id: el.attr("id").map(str::to_owned),
        ..Tuple::default()
    };
    for child in el.children() {
        if is_pidf(child, "status") {
            for item in child.children() {
                if is_pidf(item, "basic") {
                    let value = item.text();
                    let basic = match value.trim() {
                        "open" => Basic::Open,
                        "closed" => Basic::Closed,
                        other => return Err(PidfError::UnknownBasic(clean(other))),
                    };
                    tuple.basic.get_or_insert(basic);
                } else if item.is("im", NS_PIDF_IM) {
                    tuple
                        .im
                        .get_or_insert_with(|| item.text().trim().to_owned());
                } else {
                    read_extension(item, &mut tuple);
                }
            }
        } else if is_pidf(child, "contact") {
            tuple.contact = Some(child.text().trim().to_owned());
            tuple.priority = child.attr("priority").and_then(QValue::parse);
        } else if is_pidf(child, "note") {
            tuple.notes.extend(note(child));
        } else if is_pidf(child, "timestamp") {
            tuple.timestamp = Some(child.text().trim().to_owned());
        } else {
            read_extension(child, &mut tuple);
        }
    }
    Ok(tuple)
}

/// A `<show>` or `<rpid:activities>` in a tuple or its status.
fn read_extension(el: &Element, tuple: &mut Tuple) {
    if is_show(el) {
        if tuple.show.is_none() {
            tuple.show = parse_show(&el.text());
        }
    } else if el.is("activities", NS_RPID) {
        tuple.activities.extend(activities(el));
    }
}

fn is_show(el: &Element) -> bool {
    // COMPAT: a gateway copying a component-stream <show/> keeps jabber:component:accept.
    el.is("show", NS_JABBER_CLIENT) || el.is("show", "jabber:component:accept")
}

fn parse_show(text: &str) -> Option<Show> {
    match text.trim() {
        "away" => Some(Show::Away),
        "chat" => Some(Show::Chat),
        "dnd" => Some(Show::Dnd),
        "xa" => Some(Show::Xa),
        _ => None,
    }
}

fn show_name(show: &Show) -> &'static str {
    match show {
        Show::Away => "away",
        Show::Chat => "chat",
        Show::Dnd => "dnd",
        Show::Xa => "xa",
    }
}

fn parse_person(el: &Element) -> Person {
    let mut person = Person::default();
    for child in el.children() {
        if child.is("activities", NS_RPID) {
            person.activities.extend(activities(child));
        } else if child.is("note", NS_DATA_MODEL) {
            person.notes.extend(note(child));
        }
    }
    person
}

/// The activities in `<rpid:activities>`; its `<rpid:note>` is not one.
fn activities(el: &Element) -> impl Iterator<Item = Activity> + '_ {
    el.children()
        .filter(|c| c.has_ns(NS_RPID) && c.name() != "note")
        .map(|c| match c.name() {
            "other" => Activity::Other(c.text().trim().to_owned()),
            name => Activity::from_name(name),
        })
}

fn note(el: &Element) -> Option<Note> {
    let text = el.text().trim().to_owned();
    if text.is_empty() {
        return None;
    }
    let lang = el
        .attr_ns(Namespace::xml(), "lang")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    Some(Note { lang, text })
}

/// Input text fit for a reason phrase: no controls, at most 60 characters.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(60)
        .collect();
    if text.chars().count() > 60 {
        out.push_str("...");
    }
    out
}

fn show_rank(show: &Show) -> u8 {
    match show {
        Show::Chat => 0,
        Show::Away => 1,
        Show::Xa => 2,
        Show::Dnd => 3,
    }
}

impl Pidf {
    /// Whether any tuple is `open`: the presentity is available.
    pub fn is_open(&self) -> bool {
        self.tuples.iter().any(|t| t.basic == Some(Basic::Open))
    }

    /// The tuple whose data stands for the presentity: an `open` one if any, else a `closed`
    /// one; the highest priority (absent lowest), then the first in the document.
    pub fn best_tuple(&self) -> Option<&Tuple> {
        let open = self.is_open();
        self.tuples
            .iter()
            .filter(|t| t.basic == Some(if open { Basic::Open } else { Basic::Closed }))
            // max_by_key keeps the last of equals; reversing keeps the first.
            .rev()
            .max_by_key(|t| t.priority)
    }

    /// The presence the gateway sends from the SIP user's JID (RFC 8048 §6.3, Table 2), with
    /// neither `from` nor `to`: the caller sets them. It is the `xmpp_parsers` stanza itself
    /// because the gateway already builds stanzas that way and needs nothing in between.
    ///
    /// `content_language` is the request's `Content-Language` (Table 2 maps it to
    /// `xml:lang`); it becomes the language of notes that carry no `xml:lang`, since
    /// [`Presence`] has no stanza-level language.
    pub fn to_presence(&self, content_language: Option<&str>) -> Presence {
        let best = self.best_tuple();
        let mut presence = if self.is_open() {
            let mut p = Presence::available();
            p.show = self.show(best);
            p.priority.0 = best.and_then(|t| t.priority).map_or(0, QValue::to_xmpp);
            p
        } else {
            Presence::unavailable()
        };
        let notes = [
            best.map(|t| t.notes.as_slice()).unwrap_or_default(),
            self.notes.as_slice(),
        ]
        .into_iter()
        .chain(self.persons.iter().map(|p| p.notes.as_slice()))
        .find(|n| !n.is_empty())
        .unwrap_or_default();
        for note in notes {
            let lang = note.lang.as_deref().or(content_language).unwrap_or("");
            presence
                .statuses
                .entry(Lang(lang.to_owned()))
                .or_insert_with(|| note.text.clone());
        }
        presence
    }

    fn show(&self, best: Option<&Tuple>) -> Option<Show> {
        if let Some(show) = best.and_then(|t| t.show.clone()) {
            return Some(show);
        }
        let from_activities = self
            .persons
            .iter()
            .flat_map(|p| &p.activities)
            .chain(best.into_iter().flat_map(|t| &t.activities))
            .filter_map(Activity::show)
            .max_by_key(show_rank);
        from_activities.or_else(|| match best?.im.as_deref()? {
            "busy" | "dnd" => Some(Show::Dnd),
            "away" => Some(Show::Away),
            _ => None,
        })
    }
}

/// The `xs:ID` tuple id for an XMPP resource (RFC 8048 §6.2): `ID-` and the resource with
/// every byte other than ASCII letters, digits, `-` and `.` written `_XX` (hex, `_` itself
/// included). The `ID-` prefix makes any resource start like an NCName; the escape keeps ids
/// unique (RFC 3863 §4.1.2) because it is one-to-one.
pub fn tuple_id(resource: &str) -> String {
    let mut id = String::with_capacity(3 + resource.len());
    id.push_str("ID-");
    for b in resource.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            id.push(char::from(b));
        } else {
            let _ = write!(id, "_{b:02X}");
        }
    }
    id
}

/// The tuple id of [`closed_document`] when no resource is known.
const CLOSED_ID: &str = "ID-closed";

/// A PIDF with one `closed` tuple: what the gateway sends when a subscription ends or when
/// the contact has no available resource (RFC 8048 §5.3.3, §6.2).
pub fn closed_document(entity: &str) -> String {
    let mut doc = open_document(entity);
    push_tuple(
        &mut doc,
        CLOSED_ID,
        Basic::Closed,
        None,
        None,
        entity,
        &BTreeMap::new(),
    );
    close_document(doc)
}

fn open_document(entity: &str) -> String {
    let mut doc = String::with_capacity(512);
    doc.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        doc,
        "<presence xmlns=\"{NS_PIDF}\" xmlns:dm=\"{NS_DATA_MODEL}\" xmlns:rpid=\"{NS_RPID}\" entity=\""
    );
    push_escaped(&mut doc, entity, true);
    doc.push_str("\">\n");
    doc
}

fn close_document(mut doc: String) -> String {
    doc.push_str("</presence>\n");
    doc
}

fn push_tuple(
    doc: &mut String,
    id: &str,
    basic: Basic,
    show: Option<&Show>,
    priority: Option<QValue>,
    contact: &str,
    statuses: &BTreeMap<Lang, String>,
) {
    doc.push_str("  <tuple id=\"");
    push_escaped(doc, id, true);
    doc.push_str("\">\n    <status>\n      <basic>");
    doc.push_str(match basic {
        Basic::Open => "open",
        Basic::Closed => "closed",
    });
    doc.push_str("</basic>\n");
    if let Some(show) = show {
        let _ = writeln!(
            doc,
            "      <show xmlns=\"{NS_JABBER_CLIENT}\">{}</show>",
            show_name(show)
        );
    }
    doc.push_str("    </status>\n    <contact");
    if let Some(q) = priority {
        let _ = write!(doc, " priority=\"{q}\"");
    }
    doc.push('>');
    push_escaped(doc, contact, false);
    doc.push_str("</contact>\n");
    for (lang, text) in statuses {
        doc.push_str("    <note");
        if !lang.is_empty() {
            doc.push_str(" xml:lang=\"");
            push_escaped(doc, lang, true);
            doc.push('"');
        }
        doc.push('>');
        push_escaped(doc, text, false);
        doc.push_str("</note>\n");
    }
    doc.push_str("  </tuple>\n");
}

/// Appends XML-escaped text; characters XML cannot carry become U+FFFD. Whitespace in
/// attributes, and CR anywhere, are character references so that parsers keep them.
fn push_escaped(doc: &mut String, text: &str, attribute: bool) {
    for c in xml_safe(text).chars() {
        match c {
            '&' => doc.push_str("&amp;"),
            '<' => doc.push_str("&lt;"),
            '>' => doc.push_str("&gt;"),
            '"' if attribute => doc.push_str("&quot;"),
            '\r' => doc.push_str("&#13;"),
            '\n' if attribute => doc.push_str("&#10;"),
            '\t' if attribute => doc.push_str("&#9;"),
            c => doc.push(c),
        }
    }
}

/// One available resource of an XMPP contact, from its last available `<presence/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePresence {
    /// The resourcepart; empty for presence from the bare JID.
    pub resource: String,
    /// `<show/>`.
    pub show: Option<Show>,
    /// `<status/>` by `xml:lang` (empty for none).
    pub statuses: BTreeMap<Lang, String>,
    /// `<priority/>`.
    pub priority: i8,
    /// When it was last updated, in updates seen by its [`ContactPresence`]; orders equal
    /// priorities, most recent first, without a clock.
    seq: u64,
}

impl ResourcePresence {
    fn from_presence(resource: &str, presence: &Presence, seq: u64) -> Self {
        Self {
            resource: resource.to_owned(),
            show: presence.show.clone(),
            statuses: presence.statuses.clone(),
            priority: presence.priority.0,
            seq,
        }
    }
}

/// The presence of one XMPP contact across its resources, independent of any roster: the
/// gateway keeps one per watched contact, feeds it the contact's `<presence/>` stanzas and
/// sends [`ContactPresence::to_pidf`] in a NOTIFY when [`ContactPresence::handle_presence`]
/// says it changed.
#[derive(Debug, Clone, Default)]
pub struct ContactPresence {
    /// Available resources: highest priority first, then most recently updated.
    resources: Vec<ResourcePresence>,
    /// The last resource to go unavailable, with its unavailable `<status/>`: the closed
    /// document names it and carries its note ("Gone home").
    gone: Option<ResourcePresence>,
    seq: u64,
}

impl ContactPresence {
    /// A contact with no known resource (unavailable).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a presence from the contact; the resource is that of its `from` (none for a
    /// bare JID). Returns whether the PIDF changed, that is whether to send a NOTIFY.
    ///
    /// - no `type`: the resource is added or updated (past [`MAX_RESOURCES`] a new resource
    ///   is ignored);
    /// - `unavailable`: the resource is removed; from the bare JID, all are (RFC 6121 §4.5.2
    ///   servers send that when a subscription is cancelled);
    /// - `error`: all are removed, the contact being unreachable;
    /// - subscription types and probes: ignored (they are not presence information).
    pub fn handle_presence(&mut self, presence: &Presence) -> bool {
        let resource = presence
            .from
            .as_ref()
            .and_then(|j| j.resource())
            .map(|r| r.as_str());
        self.update(resource, presence)
    }

    /// As [`ContactPresence::handle_presence`], for a resource named by the caller.
    pub fn update(&mut self, resource: Option<&str>, presence: &Presence) -> bool {
        let before = self.to_pidf("");
        self.seq += 1;
        match (&presence.type_, resource) {
            (Type::None, resource) => {
                let resource = resource.unwrap_or("");
                let entry = ResourcePresence::from_presence(resource, presence, self.seq);
                match self.resources.iter().position(|r| r.resource == resource) {
                    Some(i) => self.resources[i] = entry,
                    None if self.resources.len() >= MAX_RESOURCES => return false,
                    None => self.resources.push(entry),
                }
            }
            (Type::Unavailable, Some(resource)) => {
                self.resources.retain(|r| r.resource != resource);
                self.gone = Some(ResourcePresence::from_presence(
                    resource, presence, self.seq,
                ));
            }
            (Type::Unavailable, None) => {
                self.resources.clear();
                self.gone = Some(ResourcePresence::from_presence("", presence, self.seq));
            }
            (Type::Error, _) => self.clear(),
            _ => return false,
        }
        self.resources
            .sort_by(|a, b| b.priority.cmp(&a.priority).then(b.seq.cmp(&a.seq)));
        before != self.to_pidf("")
    }

    /// Removes a resource as if it sent `unavailable` without a status. Returns whether the
    /// PIDF changed.
    pub fn remove(&mut self, resource: &str) -> bool {
        self.update(Some(resource), &Presence::unavailable())
    }

    /// What the store keeps of the contact, oldest update first: each available resource as
    /// its available presence, and the last to leave as its unavailable presence (show,
    /// statuses and priority only). [`ContactPresence::replay`] of it gives back the same
    /// PIDF.
    pub fn snapshot(&self) -> Vec<(String, Presence)> {
        let mut entries: Vec<(u64, String, Presence)> = self
            .resources
            .iter()
            .map(|r| {
                let mut p = Presence::new(Type::None);
                p.show.clone_from(&r.show);
                p.statuses.clone_from(&r.statuses);
                p.priority = Priority(r.priority);
                (r.seq, r.resource.clone(), p)
            })
            .collect();
        if let Some(gone) = &self.gone {
            let mut p = Presence::new(Type::Unavailable);
            p.statuses.clone_from(&gone.statuses);
            entries.push((gone.seq, gone.resource.clone(), p));
        }
        entries.sort_by_key(|(seq, ..)| *seq);
        entries.into_iter().map(|(_, r, p)| (r, p)).collect()
    }

    /// A contact rebuilt from a [`ContactPresence::snapshot`], oldest first.
    pub fn replay<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Presence)>) -> Self {
        let mut c = Self::new();
        for (resource, presence) in entries {
            c.update(Some(resource), presence);
        }
        c
    }

    /// Forgets every resource (the contact is unavailable).
    pub fn clear(&mut self) {
        self.resources.clear();
        self.gone = None;
    }

    /// Whether any resource is available.
    pub fn is_available(&self) -> bool {
        !self.resources.is_empty()
    }

    /// The available resources, highest priority first, then most recently updated.
    pub fn resources(&self) -> &[ResourcePresence] {
        &self.resources
    }

    /// The most available resource: the one SIP UAs will typically show (RFC 8048 §6.2).
    pub fn best(&self) -> Option<&ResourcePresence> {
        self.resources.first()
    }

    /// The PIDF for a NOTIFY (RFC 8048 §6.2, Table 1), with `entity` the contact's SIP-side
    /// address as the watcher knows it (`sip:` or `pres:`), also used as each `<contact>`.
    ///
    /// One `open` tuple per available resource, in [`ContactPresence::resources`] order, with
    /// the show in `<status>` and the statuses as `<note>`s; RPID activities in a
    /// `<dm:person>` from the best resource's show. With no resource, one `closed` tuple,
    /// named after and noted with the last resource to leave, if known.
    pub fn to_pidf(&self, entity: &str) -> String {
        let mut doc = open_document(entity);
        if self.resources.is_empty() {
            let (id, statuses) = match &self.gone {
                Some(gone) => (tuple_id(&gone.resource), gone.statuses.clone()),
                None => (CLOSED_ID.to_owned(), BTreeMap::new()),
            };
            push_tuple(&mut doc, &id, Basic::Closed, None, None, entity, &statuses);
            return close_document(doc);
        }
        for r in &self.resources {
            push_tuple(
                &mut doc,
                &tuple_id(&r.resource),
                Basic::Open,
                r.show.as_ref(),
                QValue::from_xmpp(r.priority),
                entity,
                &r.statuses,
            );
        }
        let activity = match self.best().and_then(|r| r.show.as_ref()) {
            Some(Show::Dnd) => Some("busy"),
            Some(Show::Away | Show::Xa) => Some("away"),
            Some(Show::Chat) | None => None,
        };
        if let Some(activity) = activity {
            let _ = writeln!(
                doc,
                "  <dm:person id=\"person\">\n    <rpid:activities><rpid:{activity}/></rpid:activities>\n  </dm:person>"
            );
        }
        close_document(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/pidf/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Whether an error is the expected one.
    type Check = fn(&PidfError) -> bool;

    /// What a fixture should become.
    enum Want {
        /// Available: show, status (language, text), priority.
        Available(Option<Show>, Option<(&'static str, &'static str)>, i8),
        /// Unavailable, with this status.
        Unavailable(Option<(&'static str, &'static str)>),
        /// Refused.
        Refused(Check),
    }
    use Want::*;

    const FIXTURES: &[(&str, Want)] = &[
        // RFC 3863 §6, first example: prefixed elements, q 0.8 -> ceil(101.6).
        ("rfc3863-prefixed.xml", Available(None, None, 102)),
        // RFC 3863 §6, second example: the 1.0 tuple wins and has no note, so the
        // presence-level note is the status; the other tuple's im:im busy is not used.
        (
            "rfc3863-extensions.xml",
            Available(None, Some(("", "I'll be in Tokyo next week")), 127),
        ),
        // RFC 4480 example: person activity away; best tuple (1.0) has no note.
        (
            "rfc4480-rpid.xml",
            Available(
                Some(Show::Away),
                Some(("", "Full state presence document")),
                127,
            ),
        ),
        (
            "linphone-on-the-phone.xml",
            Available(Some(Show::Dnd), Some(("en", "In a call")), 0),
        ),
        // standalone="no", person before tuple.
        (
            "jitsi-away.xml",
            Available(Some(Show::Away), Some(("", "Away")), 0),
        ),
        (
            "bria-busy.xml",
            Available(Some(Show::Dnd), Some(("", "Busy")), 0),
        ),
        // Our own output form: the higher tuple (0.393 -> 50) wins, its show is xa.
        (
            "rfc8048-show.xml",
            Available(Some(Show::Xa), Some(("en", "In the orchard")), 50),
        ),
        ("minimal.xml", Available(None, None, 0)),
        ("closed.xml", Unavailable(Some(("", "Gone home")))),
        // Open beats a higher closed tuple; 0.5 beats 0.2.
        (
            "mixed-open-closed.xml",
            Available(None, Some(("", "At the laptop")), 64),
        ),
        ("empty-presence.xml", Unavailable(None)),
        (
            "latin1-declared.xml",
            Available(None, Some(("fr", "D\u{e9}jeuner")), 0),
        ),
        (
            "bad-not-xml.xml",
            Refused(|e| matches!(e, PidfError::Xml(_))),
        ),
        (
            "bad-truncated.xml",
            Refused(|e| matches!(e, PidfError::Xml(_))),
        ),
        (
            "bad-wrong-namespace.xml",
            Refused(|e| matches!(e, PidfError::NotPidf(_))),
        ),
        (
            "bad-no-namespace.xml",
            Refused(|e| matches!(e, PidfError::NotPidf(_))),
        ),
        (
            "bad-basic-missing.xml",
            Refused(|e| matches!(e, PidfError::NoBasic)),
        ),
        (
            "bad-basic-unknown.xml",
            Refused(|e| matches!(e, PidfError::UnknownBasic(v) if v == "online")),
        ),
        (
            "bad-doctype.xml",
            Refused(|e| matches!(e, PidfError::Xml(_))),
        ),
        (
            "bad-must-understand.xml",
            Refused(|e| matches!(e, PidfError::MustUnderstand(n) if n == "forwarding")),
        ),
    ];

    fn status_of(p: &Presence) -> Option<(&str, &str)> {
        p.statuses
            .iter()
            .next()
            .map(|(l, t)| (l.0.as_str(), t.as_str()))
    }

    #[test]
    fn fixtures_map_to_presence() {
        for (name, want) in FIXTURES {
            let parsed = parse(&fixture(name));
            match (want, parsed) {
                (Available(show, status, priority), Ok(pidf)) => {
                    let p = pidf.to_presence(None);
                    assert_eq!(p.type_, Type::None, "{name}");
                    assert_eq!(&p.show, show, "{name}");
                    assert_eq!(status_of(&p), *status, "{name}");
                    assert_eq!(p.priority.0, *priority, "{name}");
                }
                (Unavailable(status), Ok(pidf)) => {
                    let p = pidf.to_presence(None);
                    assert_eq!(p.type_, Type::Unavailable, "{name}");
                    assert_eq!(p.show, None, "{name}");
                    assert_eq!(status_of(&p), *status, "{name}");
                }
                (Refused(check), Err(e)) => {
                    assert!(check(&e), "{name}: {e:?}");
                    let r = e.rejection();
                    assert_eq!(r.code.as_u16(), 400, "{name}");
                    assert!(
                        !r.reason.chars().any(char::is_control),
                        "{name}: {:?}",
                        r.reason
                    );
                }
                (_, got) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn every_fixture_is_in_the_table() {
        let dir = format!("{}/fixtures/pidf", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".xml") {
                assert!(FIXTURES.iter().any(|(f, _)| *f == name), "{name}");
            }
        }
    }

    #[test]
    fn parsed_details() {
        let pidf = parse(&fixture("rfc3863-extensions.xml")).unwrap();
        assert_eq!(pidf.entity.as_deref(), Some("pres:someone@example.com"));
        let t = &pidf.tuples[0];
        assert_eq!(t.id.as_deref(), Some("bs35r9"));
        assert_eq!(t.basic, Some(Basic::Open));
        assert_eq!(t.im.as_deref(), Some("busy"));
        assert_eq!(t.contact.as_deref(), Some("im:someone@mobilecarrier.net"));
        assert_eq!(t.priority, QValue::from_thousandths(800));
        assert_eq!(t.timestamp.as_deref(), Some("2001-10-27T16:49:29Z"));
        assert_eq!(
            t.notes,
            [
                Note {
                    lang: Some("en".into()),
                    text: "Don't Disturb Please!".into()
                },
                Note {
                    lang: Some("fr".into()),
                    text: "Ne d\u{e9}rangez pas, s'il vous plait".into()
                },
            ]
        );
        assert_eq!(
            pidf.best_tuple().and_then(|t| t.id.as_deref()),
            Some("eg92n8")
        );

        let rpid = parse(&fixture("rfc4480-rpid.xml")).unwrap();
        assert_eq!(rpid.persons.len(), 1);
        assert_eq!(rpid.persons[0].activities, [Activity::Away]);
        assert_eq!(rpid.persons[0].notes[0].text, "Scoring 120");

        let latin1 = parse(&fixture("latin1-declared.xml")).unwrap();
        assert_eq!(
            latin1.entity.as_deref(),
            Some("sip:h\u{e9}l\u{e8}ne@sip.example.org")
        );
    }

    /// Single-tuple documents for the show sources and their precedence.
    #[test]
    fn show_sources() {
        fn doc(status_extra: &str, tuple_extra: &str, person: &str) -> String {
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:im="urn:ietf:params:xml:ns:pidf:im"
  xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
  entity="sip:a@b"><tuple id="t"><status><basic>open</basic>{status_extra}</status>{tuple_extra}</tuple>
  <dm:person id="p">{person}</dm:person></presence>"#
            )
        }
        let act = |a: &str| format!("<rpid:activities><rpid:{a}/></rpid:activities>");
        let cases: &[(String, Option<Show>)] = &[
            (doc("", "", ""), None),
            (doc("", "", &act("away")), Some(Show::Away)),
            (doc("", "", &act("vacation")), Some(Show::Xa)),
            (doc("", "", &act("sleeping")), Some(Show::Xa)),
            (doc("", "", &act("busy")), Some(Show::Dnd)),
            (doc("", "", &act("meeting")), Some(Show::Dnd)),
            (doc("", "", &act("on-the-phone")), Some(Show::Dnd)),
            (doc("", "", &act("working")), None),
            (doc("", "", &act("unknown")), None),
            (
                doc(
                    "",
                    "",
                    "<rpid:activities><rpid:note>x</rpid:note><rpid:other>gardening</rpid:other></rpid:activities>",
                ),
                None,
            ),
            // Several activities: the strongest wins.
            (
                doc(
                    "",
                    "",
                    "<rpid:activities><rpid:meal/><rpid:on-the-phone/></rpid:activities>",
                ),
                Some(Show::Dnd),
            ),
            // Pre-data-model clients: activities in the status or the tuple.
            (doc(&act("away"), "", ""), Some(Show::Away)),
            (doc("", &act("busy"), ""), Some(Show::Dnd)),
            // RFC 8048 <show> beats RPID.
            (
                doc(
                    r#"<show xmlns="jabber:client">chat</show>"#,
                    "",
                    &act("busy"),
                ),
                Some(Show::Chat),
            ),
            // An unknown show value is ignored, RPID is used.
            (
                doc(
                    r#"<show xmlns="jabber:client">online</show>"#,
                    "",
                    &act("away"),
                ),
                Some(Show::Away),
            ),
            // A show in another namespace is an unknown extension.
            (doc(r#"<show xmlns="urn:x">dnd</show>"#, "", ""), None),
            (doc("<im:im>busy</im:im>", "", ""), Some(Show::Dnd)),
            (doc("<im:im>away</im:im>", "", ""), Some(Show::Away)),
            (
                doc("<im:im>busy</im:im>", "", &act("vacation")),
                Some(Show::Xa),
            ),
        ];
        for (body, want) in cases {
            let pidf = parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(&pidf.to_presence(None).show, want, "{body}");
        }
    }

    #[test]
    fn notes_and_languages() {
        let body = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
  <tuple id="t"><status><basic>open</basic></status>
    <note xml:lang="en">Lunch</note><note xml:lang="de">Mittagessen</note><note>Bare</note>
    <note xml:lang="en">Second English</note><note>   </note></tuple>
  <note>Document note</note></presence>"#;
        let p = parse(body).unwrap().to_presence(Some("it"));
        let statuses: Vec<_> = p
            .statuses
            .iter()
            .map(|(l, t)| (l.0.as_str(), t.as_str()))
            .collect();
        // The note without xml:lang takes the Content-Language; the first note per language
        // wins; blank notes are dropped.
        assert_eq!(
            statuses,
            [("de", "Mittagessen"), ("en", "Lunch"), ("it", "Bare")]
        );
    }

    #[test]
    fn refused_bodies() {
        let huge = {
            let mut b = fixture("minimal.xml");
            b.truncate(b.len() - "</presence>\n".len());
            while b.len() <= MAX_BODY {
                b.extend_from_slice(b"<note>padding padding padding</note>\n");
            }
            b.extend_from_slice(b"</presence>\n");
            b
        };
        let deep = {
            let mut b =
                br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">"#.to_vec();
            b.extend(b"<x>".repeat(20_000));
            b
        };
        let cases: &[(&[u8], Check)] = &[
            (&huge, |e| matches!(e, PidfError::TooLarge(_))),
            (&deep, |e| matches!(e, PidfError::TooDeep)),
            (b"", |e| matches!(e, PidfError::Empty)),
            (b"  \r\n ", |e| matches!(e, PidfError::Empty)),
            (b"<?xml version='1.0'?>", |e| matches!(e, PidfError::Empty)),
            (b"<?xml version='1.0'", |e| matches!(e, PidfError::Xml(_))),
            (b"\xff\xfe<\x00p\x00", |e| {
                matches!(e, PidfError::Encoding(_))
            }),
            (
                b"<?xml version='1.0' encoding='klingon'?><presence/>",
                |e| matches!(e, PidfError::UnknownEncoding(n) if n == "klingon"),
            ),
            (
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple><status><basic>open",
                |e| matches!(e, PidfError::Xml(_)),
            ),
            (
                b"<p:presence xmlns:p='urn:ietf:params:xml:ns:pidf'><q:tuple/></p:presence>",
                |e| matches!(e, PidfError::Xml(_)),
            ),
            (
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf'>&bogus;</presence>",
                |e| matches!(e, PidfError::Xml(_)),
            ),
            (
                b"<html xmlns='http://www.w3.org/1999/xhtml'><body/></html>",
                |e| matches!(e, PidfError::NotPidf(_)),
            ),
            (
                b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='t'/></presence>",
                |e| matches!(e, PidfError::NoBasic),
            ),
        ];
        for (body, check) in cases {
            let e = parse(body).unwrap_err();
            assert!(
                check(&e),
                "{:?}: {e:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
            assert!(!e.to_string().chars().any(char::is_control), "{e}");
        }
        assert_eq!(parse(&huge).unwrap_err().rejection().code.as_u16(), 413);
    }

    #[test]
    fn lenient_bodies() {
        let cases: &[&[u8]] = &[
            // BOM and leading whitespace.
            b"\xEF\xBB\xBF \n<?xml version='1.0' encoding='utf-8'?><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'><tuple id='t'><status><basic>open</basic></status></tuple></presence>",
            // The RFC 3863 §4.1.1 spelling with a trailing colon; no entity; no tuple id.
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf:'><tuple><status><basic> open </basic></status><contact priority='high'>sip:a@b</contact></tuple></presence>",
            // Elements out of order, unknown extensions, a mustUnderstand we do understand,
            // a tuple without <basic> next to one with it.
            b"<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:x='urn:x' xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' entity='sip:a@b'><x:y/><tuple id='u'><status><x:z/></status></tuple><tuple id='t'><note>n</note><status><basic>open</basic></status><rpid:activities mustUnderstand='true'><rpid:away/></rpid:activities></tuple></presence>",
        ];
        for body in cases {
            let pidf =
                parse(body).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
            assert!(pidf.is_open());
            assert_eq!(pidf.to_presence(None).priority.0, 0);
        }
    }

    #[test]
    fn qvalues() {
        let cases = [
            ("0", Some(0)),
            ("1", Some(1000)),
            ("1.0", Some(1000)),
            ("1.000", Some(1000)),
            ("0.8", Some(800)),
            ("0.007", Some(7)),
            ("0.0075", Some(7)),
            (".5", Some(500)),
            (" 0.25 ", Some(250)),
            ("00.1", Some(100)),
            ("1.5", None),
            ("1.0001", None),
            ("2", None),
            ("-0.5", None),
            ("", None),
            (".", None),
            ("0,5", None),
            ("high", None),
            ("0.1e1", None),
        ];
        for (text, want) in cases {
            assert_eq!(QValue::parse(text).map(QValue::thousandths), want, "{text}");
        }
        let shown: Vec<String> = [0, 7, 10, 393, 500, 1000]
            .map(|t| QValue::from_thousandths(t).unwrap().to_string())
            .to_vec();
        assert_eq!(shown, ["0", "0.007", "0.01", "0.393", "0.5", "1"]);
        assert_eq!(QValue::from_thousandths(1001), None);
    }

    /// RFC 8048 §6.2: 0 -> 0, 127 -> 1, unique steps (1 -> 0.007); negatives not mapped; and
    /// the SIP -> XMPP mapping undoes it.
    #[test]
    fn priority_mapping() {
        assert_eq!(QValue::from_xmpp(0).map(QValue::thousandths), Some(0));
        assert_eq!(QValue::from_xmpp(1).map(QValue::thousandths), Some(7));
        assert_eq!(QValue::from_xmpp(127), Some(QValue::MAX));
        assert_eq!(QValue::from_xmpp(-1), None);
        assert_eq!(QValue::from_xmpp(i8::MIN), None);
        let mut previous = None;
        for p in 0..=i8::MAX {
            let q = QValue::from_xmpp(p).unwrap();
            assert!(previous < Some(q), "{p}");
            previous = Some(q);
            assert_eq!(QValue::parse(&q.to_string()), Some(q));
            assert_eq!(q.to_xmpp(), p);
        }
        let to_xmpp = |t| QValue::from_thousandths(t).unwrap().to_xmpp();
        assert_eq!(
            [0, 1, 500, 800, 999, 1000].map(to_xmpp),
            [0, 1, 64, 102, 127, 127]
        );
        let mut last = 0;
        for t in 0..=1000 {
            assert!(to_xmpp(t) >= last);
            last = to_xmpp(t);
        }
    }

    #[test]
    fn tuple_ids() {
        let cases = [
            ("laptop", "ID-laptop"),
            ("", "ID-"),
            ("Gajim.x-1", "ID-Gajim.x-1"),
            ("under_score", "ID-under_5Fscore"),
            ("a b/c:d", "ID-a_20b_2Fc_3Ad"),
            ("\u{fc}ber", "ID-_C3_BCber"),
            ("<&>\"", "ID-_3C_26_3E_22"),
        ];
        for (resource, id) in cases {
            assert_eq!(tuple_id(resource), id);
            // An NCName: the ID- prefix, then letters, digits, '-', '.', '_'.
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            );
        }
        // One-to-one where a naive replacement would collide.
        assert_ne!(tuple_id("a b"), tuple_id("a_b"));
        assert_ne!(tuple_id("a_20b"), tuple_id("a b"));
    }

    fn stanza(xml: &str) -> Presence {
        let el: Element = xml.parse().unwrap();
        Presence::try_from(el).unwrap()
    }

    const JULIET: &str = "sip:juliet*capulet.lit@jabber.sip.test";

    #[test]
    fn resources_aggregate() {
        let mut c = ContactPresence::new();
        assert!(!c.is_available());
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/balcony'>\
             <show>away</show><status>Stargazing</status><priority>5</priority></presence>"
        )));
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/chamber'>\
             <show>dnd</show><status xml:lang='en'>Sleeping</status><priority>10</priority></presence>"
        )));
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/phone'>\
             <priority>5</priority></presence>"
        )));
        assert!(c.is_available());
        let order: Vec<_> = c.resources().iter().map(|r| r.resource.as_str()).collect();
        // Priority, then the most recent of equal priorities.
        assert_eq!(order, ["chamber", "phone", "balcony"]);

        let doc = c.to_pidf(JULIET);
        let pidf = parse(doc.as_bytes()).unwrap();
        let ids: Vec<_> = pidf
            .tuples
            .iter()
            .map(|t| t.id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["ID-chamber", "ID-phone", "ID-balcony"]);
        assert_eq!(pidf.entity.as_deref(), Some(JULIET));
        assert_eq!(pidf.persons[0].activities, [Activity::Busy]);
        let p = pidf.to_presence(None);
        assert_eq!(
            (p.type_.clone(), p.show.clone(), p.priority.0, status_of(&p)),
            (Type::None, Some(Show::Dnd), 10, Some(("en", "Sleeping")))
        );

        // Re-sending the same presence changes nothing; subscription stanzas are ignored.
        assert!(!c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/chamber'>\
             <show>dnd</show><status xml:lang='en'>Sleeping</status><priority>10</priority></presence>"
        )));
        assert!(!c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit' type='subscribed'/>"
        )));
        assert!(!c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/nowhere' type='unavailable'/>"
        )));

        // The balcony resource gets ahead of phone by updating (equal priority, more recent).
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/balcony'>\
             <priority>5</priority></presence>"
        )));
        assert_eq!(c.resources()[1].resource, "balcony");

        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/chamber' type='unavailable'/>"
        )));
        assert_eq!(c.best().map(|r| r.resource.as_str()), Some("balcony"));
        assert!(c.remove("balcony"));
        assert!(!c.remove("balcony"));
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='juliet@capulet.lit/phone' type='unavailable'>\
             <status>Gone to Mantua</status></presence>"
        )));
        assert!(!c.is_available());
        let pidf = parse(c.to_pidf(JULIET).as_bytes()).unwrap();
        assert_eq!(pidf.tuples.len(), 1);
        assert_eq!(pidf.tuples[0].id.as_deref(), Some("ID-phone"));
        let p = pidf.to_presence(None);
        assert_eq!(p.type_, Type::Unavailable);
        assert_eq!(status_of(&p), Some(("", "Gone to Mantua")));
    }

    #[test]
    fn bare_jid_error_and_bounds() {
        let mut c = ContactPresence::new();
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='romeo@montague.lit'/>"
        )));
        assert_eq!(c.resources()[0].resource, "");
        for i in 0..MAX_RESOURCES + 5 {
            c.update(Some(&format!("r{i}")), &Presence::available());
        }
        assert_eq!(c.resources().len(), MAX_RESOURCES);
        // Unavailable from the bare JID: every resource is gone.
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='romeo@montague.lit' type='unavailable'/>"
        )));
        assert!(!c.is_available());
        c.update(Some("a"), &Presence::available());
        assert!(c.handle_presence(&stanza(
            "<presence xmlns='jabber:component:accept' from='romeo@montague.lit' type='error'>\
             <error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        )));
        assert!(!c.is_available());
        assert_eq!(c.to_pidf("sip:x@y"), closed_document("sip:x@y"));
    }

    #[test]
    fn document_form() {
        let mut c = ContactPresence::new();
        let mut p = Presence::available().with_show(Show::Xa).with_priority(-5);
        p.set_status("", "Fish & <chips> \"now\"\r\nok");
        p.set_status("en", "x\u{1}y");
        c.update(Some("home&away"), &p);
        let doc = c.to_pidf("sip:a&b*x.test@gw.test");
        assert!(doc.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
        assert!(
            doc.contains("entity=\"sip:a&amp;b*x.test@gw.test\""),
            "{doc}"
        );
        assert!(doc.contains("<tuple id=\"ID-home_26away\">"), "{doc}");
        // A negative priority is not mapped.
        assert!(
            doc.contains("<contact>sip:a&amp;b*x.test@gw.test</contact>"),
            "{doc}"
        );
        assert!(
            doc.contains("<show xmlns=\"jabber:client\">xa</show>"),
            "{doc}"
        );
        assert!(doc.contains("<rpid:away/>"), "{doc}");

        // Namespaces and text survive a real parser.
        let root: Element = doc
            .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
            .parse()
            .unwrap();
        assert!(root.is("presence", NS_PIDF));
        let tuple = root.get_child("tuple", NS_PIDF).unwrap();
        let status = tuple.get_child("status", NS_PIDF).unwrap();
        assert!(status.get_child("basic", NS_PIDF).is_some());
        assert!(status.get_child("show", NS_JABBER_CLIENT).is_some());
        let person = root.get_child("person", NS_DATA_MODEL).unwrap();
        let activities = person.get_child("activities", NS_RPID).unwrap();
        assert!(activities.get_child("away", NS_RPID).is_some());

        let back = parse(doc.as_bytes()).unwrap().to_presence(None);
        assert_eq!(back.priority.0, 0);
        assert_eq!(
            back.statuses.get(&Lang(String::new())).map(String::as_str),
            Some("Fish & <chips> \"now\"\r\nok")
        );
        assert_eq!(
            back.statuses.get(&Lang("en".into())).map(String::as_str),
            Some("x\u{fffd}y")
        );

        let closed = closed_document("pres:juliet@example.com");
        let pidf = parse(closed.as_bytes()).unwrap();
        assert!(!pidf.is_open());
        assert_eq!(pidf.tuples[0].id.as_deref(), Some(CLOSED_ID));
        assert_eq!(pidf.to_presence(None).type_, Type::Unavailable);
    }

    /// XMPP -> PIDF -> XMPP keeps availability, show, status and priority.
    #[test]
    fn round_trips() {
        let shows = [
            None,
            Some(Show::Chat),
            Some(Show::Away),
            Some(Show::Xa),
            Some(Show::Dnd),
        ];
        for show in shows {
            for priority in [0, 1, 42, 63, 64, 126, 127] {
                let mut p = Presence::available().with_priority(priority);
                p.show = show.clone();
                p.set_status("en", "Wherefore art thou");
                let mut c = ContactPresence::new();
                c.update(Some("res"), &p);
                let back = parse(c.to_pidf(JULIET).as_bytes())
                    .unwrap()
                    .to_presence(None);
                assert_eq!(back.type_, Type::None);
                assert_eq!(back.show, show);
                assert_eq!(back.priority.0, priority);
                assert_eq!(back.statuses, p.statuses);
            }
        }
        let mut c = ContactPresence::new();
        let mut gone = Presence::unavailable();
        gone.set_status("", "Bye");
        c.update(Some("res"), &Presence::available());
        c.update(Some("res"), &gone);
        let back = parse(c.to_pidf(JULIET).as_bytes())
            .unwrap()
            .to_presence(None);
        assert_eq!(back.type_, Type::Unavailable);
        assert_eq!(back.statuses, gone.statuses);
    }

    /// Many prefixes and single-byte corruptions of every fixture parses or is refused,
    /// and whatever parses maps; nothing panics.
    #[test]
    fn damaged_fixtures_never_panic() {
        let dir = format!("{}/fixtures/pidf", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "xml") {
                continue;
            }
            let body = std::fs::read(path).unwrap();
            // Every third offset keeps the debug-build run short.
            for cut in (0..body.len()).step_by(3) {
                if let Ok(pidf) = parse(&body[..cut]) {
                    let _ = pidf.to_presence(Some("en"));
                }
                if cut % 4 != 0 {
                    continue;
                }
                for byte in [b'<', b'"', b'&', 0xff] {
                    let mut damaged = body.clone();
                    damaged[cut] = byte;
                    if let Ok(pidf) = parse(&damaged) {
                        let _ = pidf.to_presence(None);
                    }
                }
            }
        }
    }

    #[test]
    fn presence_serialises_in_the_component_namespace() {
        let pidf = parse(&fixture("bria-busy.xml")).unwrap();
        let el = Element::from(pidf.to_presence(None));
        assert!(el.is("presence", "jabber:component:accept"));
        assert_eq!(
            el.get_child("show", "jabber:component:accept")
                .unwrap()
                .text(),
            "dnd"
        );
    }
}
