//! Stanzas sent for SIP users, remembered for a while so that an XMPP error reply to one
//! becomes an ERROR notice (RFC 7247 §7.1) naming the destination and the first line of the
//! text.
//!
//! A log in one fixed block of memory, written round and round: remembering a stanza
//! appends a record and allocates nothing, forgetting is being overwritten, and what the
//! gateway holds does not grow with time or rate. (A map of boxed records, the first
//! design, added 6 MB to the process in its first minute at 1,000 messages/s, and more at
//! higher rates.) A stanza's number, from the gateway's counter, finds its record through
//! an index of positions; a record is used only while nothing newer has been written over
//! it, it still carries that number, and it is younger than [`TTL`].
//!
//! The block is filled at start, so its pages are resident from then on: the gateway's
//! resident memory is flat from its first message. The price is [`LOG_BYTES`] of memory
//! from the start, and above about 1,000 messages/s a reply later than the block holds
//! (about 8 MiB of records, some 100 bytes each) is no longer matched.

use std::time::{Duration, Instant};

/// How long an XMPP error reply is matched to the stanza it answers. Errors from the local
/// server come back at once, and those from remote servers within seconds.
pub const TTL: Duration = Duration::from_secs(60);
/// Size of the log.
pub const LOG_BYTES: usize = 8 << 20;
/// Index entries: more than the records the log holds, so an entry is overwritten only
/// after its record is.
const INDEX_LEN: usize = 1 << 17;
/// Key, time in ms since the log's start, and the three lengths.
const HEADER: usize = 8 + 8 + 2 * 3;
/// The longest record; the first line is cut to fit.
const RECORD_MAX: usize = 4096;
/// No record at this index entry, or a record taken.
const NONE: u64 = u64::MAX;

/// What is remembered of a stanza: who sent it, where to, and how its text began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentForSip {
    /// The SIP user to notify (a valid URI).
    pub user: String,
    /// The destination as the user wrote it.
    pub destination: String,
    /// The first line of the text, shortened.
    pub first_line: String,
}

/// The log; see the module doc.
#[derive(Debug)]
pub struct SentLog {
    /// Records, written round and round.
    log: Box<[u8]>,
    /// Absolute position (bytes written before it, over all rounds) of each stanza's
    /// record, at `key % INDEX_LEN`.
    index: Box<[u64]>,
    /// Absolute position where the next record goes.
    end: u64,
    epoch: Instant,
}

impl SentLog {
    /// An empty log, its memory already resident: filled with a non-zero byte, as zeroed
    /// memory would be mapped by the OS only when first written.
    pub fn new(now: Instant) -> Self {
        Self {
            log: vec![0xff; LOG_BYTES].into_boxed_slice(),
            index: vec![NONE; INDEX_LEN].into_boxed_slice(),
            end: 0,
            epoch: now,
        }
    }

    /// Remembers the stanza numbered `key` (numbers only grow).
    pub fn remember(&mut self, now: Instant, key: u64, sent: &SentForSip) {
        let fixed = HEADER + sent.user.len() + sent.destination.len();
        if fixed > RECORD_MAX / 2 {
            // Not a real address: nothing useful to say about it later.
            return;
        }
        let line = cut(&sent.first_line, RECORD_MAX - fixed);
        let len = fixed + line.len();
        let mut at = self.end;
        let mut start = (at % LOG_BYTES as u64) as usize;
        if start + len > LOG_BYTES {
            // Records do not wrap: the rest of this round stays unused.
            at += (LOG_BYTES - start) as u64;
            start = 0;
        }
        let record = &mut self.log[start..start + len];
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        record[..8].copy_from_slice(&key.to_le_bytes());
        record[8..16].copy_from_slice(&ms.to_le_bytes());
        let texts = [sent.user.as_str(), sent.destination.as_str(), line];
        let mut pos = 16;
        for text in texts {
            // Each fits in u16: the record is at most RECORD_MAX bytes.
            record[pos..pos + 2].copy_from_slice(&(text.len() as u16).to_le_bytes());
            pos += 2;
        }
        for text in texts {
            record[pos..pos + text.len()].copy_from_slice(text.as_bytes());
            pos += text.len();
        }
        self.index[key as usize % INDEX_LEN] = at;
        self.end = at + len as u64;
    }

    /// The record of stanza `key`, once: taking it forgets it. `None` when it was never
    /// remembered, is too old, or has been written over.
    pub fn take(&mut self, now: Instant, key: u64) -> Option<SentForSip> {
        let slot = key as usize % INDEX_LEN;
        let at = self.index[slot];
        if at == NONE || self.end - at > LOG_BYTES as u64 {
            return None;
        }
        let start = (at % LOG_BYTES as u64) as usize;
        let header = self.log.get(start..start + HEADER)?;
        let number = |range: std::ops::Range<usize>| {
            header
                .get(range)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let length = |at: usize| {
            header
                .get(at..at + 2)
                .and_then(|b| b.try_into().ok())
                .map(|b| usize::from(u16::from_le_bytes(b)))
        };
        let (stored_key, ms) = (number(0..8)?, number(8..16)?);
        let (user_len, dest_len, line_len) = (length(16)?, length(18)?, length(20)?);
        let age = now
            .saturating_duration_since(self.epoch)
            .saturating_sub(Duration::from_millis(ms));
        if stored_key != key || age >= TTL {
            return None;
        }
        self.index[slot] = NONE;
        let texts = self
            .log
            .get(start + HEADER..start + HEADER + user_len + dest_len + line_len)?;
        let (user, rest) = texts.split_at(user_len);
        let (destination, line) = rest.split_at(dest_len);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Some(SentForSip {
            user: text(user),
            destination: text(destination),
            first_line: text(line),
        })
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u64) -> SentForSip {
        SentForSip {
            user: "sip:alice@example.com".into(),
            destination: format!("sip:romeo*xmpp.test@jabber.x.com;n={n}"),
            first_line: "héllo".into(),
        }
    }

    #[test]
    fn a_record_is_found_once() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        log.remember(t0, 1, &sent(1));
        log.remember(t0, 2, &sent(2));
        assert_eq!(log.take(t0, 2), Some(sent(2)));
        assert_eq!(log.take(t0, 2), None);
        assert_eq!(log.take(t0, 1), Some(sent(1)));
        assert_eq!(log.take(t0, 3), None);
    }

    #[test]
    fn records_age_out() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        log.remember(t0, 1, &sent(1));
        log.remember(t0 + Duration::from_secs(1), 2, &sent(2));
        assert_eq!(log.take(t0 + TTL, 1), None);
        assert_eq!(log.take(t0 + TTL, 2), Some(sent(2)));
    }

    #[test]
    fn old_records_are_written_over_and_not_mistaken() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        let record = HEADER + sent(1).user.len() + sent(1).destination.len() + 6;
        let rounds = 2 * LOG_BYTES / record + 10;
        for key in 1..=rounds as u64 {
            log.remember(t0, key, &sent(key));
        }
        let last = rounds as u64;
        assert_eq!(log.take(t0, 1), None);
        assert_eq!(log.take(t0, last - INDEX_LEN as u64), None);
        assert_eq!(log.take(t0, last), Some(sent(last)));
        assert_eq!(log.take(t0, last - 1000), Some(sent(last - 1000)));
    }

    #[test]
    fn long_texts_are_cut_and_odd_addresses_skipped() {
        let t0 = Instant::now();
        let mut log = SentLog::new(t0);
        let mut long = sent(1);
        long.first_line = "é".repeat(RECORD_MAX);
        log.remember(t0, 1, &long);
        let got = log.take(t0, 1).unwrap();
        assert!(got.first_line.len() <= RECORD_MAX && got.first_line.starts_with('é'));
        let mut huge = sent(2);
        huge.user = "x".repeat(RECORD_MAX);
        log.remember(t0, 2, &huge);
        assert_eq!(log.take(t0, 2), None);
    }
}
