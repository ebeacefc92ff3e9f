//! The stream reader fed in chunks (size from the first input byte) never panics, and
//! reads the stanzas after a stream header as minidom's own parser (rxml) reads them,
//! apart from the differences `component/src/stream.rs`'s tests name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipjab_component::fuzzing::{
    Ending, has_lone_cr, is_stricter, read_by_minidom, read_in_chunks,
};

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
    xmlns:stream='http://etherx.jabber.org/streams' id='x' from='d'>";

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let ours = read_in_chunks(HEADER, &chunks);
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    if has_lone_cr(rest) {
        return;
    }
    match read_by_minidom(rest) {
        Ok(theirs) => match ours {
            // The root's end in `rest` ends both readers' work.
            Ok((ours, Ending::Idle | Ending::Closed)) => assert_eq!(ours, theirs, "{rest:?}"),
            Ok((_, Ending::MidStanza)) => panic!("minidom read all, we are mid-stanza: {rest:?}"),
            Err(e) => assert!(is_stricter(&e), "{rest:?}: {e:?}"),
        },
        // A stanza cut short is not an error while more may come.
        Err(e) => assert!(
            !matches!(ours, Ok((_, Ending::Idle | Ending::Closed))),
            "{rest:?}: minidom: {e}, ours: {ours:?}"
        ),
    }
});
