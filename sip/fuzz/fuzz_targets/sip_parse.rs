//! parse -> serialize -> reparse gives an equal message; checks never panic; a request's
//! common fields read up front read as on demand.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipjab_sip::{Message, Response, StatusCode, check_request, check_response, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = parse_datagram(data) else {
        return;
    };
    match &m {
        Message::Request(r) => {
            // Read up front, as the transport hands a request over, or on demand: the
            // same values, the same verdict and the same plain answer.
            let mut ready = r.clone();
            ready.headers.read_common();
            let checked = check_request(r);
            if let Err(rejection) = &checked {
                let _ = rejection.to_response(r);
            }
            assert_eq!(check_request(&ready).is_ok(), checked.is_ok());
            let h = (&r.headers, &ready.headers);
            assert_eq!(format!("{:?}", h.0.top_via()), format!("{:?}", h.1.top_via()));
            assert_eq!(format!("{:?}", h.0.from()), format!("{:?}", h.1.from()));
            assert_eq!(format!("{:?}", h.0.to()), format!("{:?}", h.1.to()));
            assert_eq!(format!("{:?}", h.0.content_type()), format!("{:?}", h.1.content_type()));
            if checked.is_ok() {
                let status = StatusCode::ACCEPTED;
                assert_eq!(
                    Response::plain_answer_bytes(&ready, status, "Accepted"),
                    Response::for_request(r, status, "Accepted").to_bytes()
                );
            }
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
