//! parse -> serialize -> reparse gives an equal message; checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipjab_sip::{Message, check_request, check_response, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = parse_datagram(data) else {
        return;
    };
    match &m {
        Message::Request(r) => {
            let _ = check_request(r).map_err(|rej| rej.to_response(r));
            let _ = sipjab_sip::TransactionId::for_request(r);
        }
        Message::Response(r) => {
            let _ = check_response(r);
        }
    }
    let bytes = m.to_bytes();
    let again = parse_datagram(&bytes).expect("serialized message reparses");
    assert_eq!(again, m);
});
