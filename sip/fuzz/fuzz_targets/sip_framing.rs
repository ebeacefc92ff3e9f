//! The stream decoder never panics, stays bounded, and a message it yields serializes
//! back to something the datagram parser reads the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipjab_sip::{StreamDecoder, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut d = StreamDecoder::new(4096);
    'feed: for piece in data.chunks(step) {
        d.push(piece);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    let again = parse_datagram(&m.to_bytes()).expect("reparses");
                    assert_eq!(again, m);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(d.buffered() <= 4096 + step);
    }
});
