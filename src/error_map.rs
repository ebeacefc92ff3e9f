//! Error mapping between SIP status codes and XMPP stanza error conditions, RFC 7247 §7
//! (Table 2, XMPP to SIP, §7.1; Table 3, SIP to XMPP, §7.2).

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

/// The XMPP condition for a SIP final error response (RFC 7247 §7.2, Table 3); codes the
/// table does not list go by their class.
pub fn condition_for_status(code: u16) -> DefinedCondition {
    use DefinedCondition as C;
    match code {
        300 | 302 | 305 => C::Redirect { new_address: None },
        301 | 410 => C::Gone { new_address: None },
        380 | 406 | 415 | 416 | 421 | 482 | 483 | 488 | 505 | 606 => C::NotAcceptable,
        400 | 402 | 493 => C::BadRequest,
        401 => C::NotAuthorized,
        403 => C::Forbidden,
        404 | 481 | 484 | 485 | 604 => C::ItemNotFound,
        405 | 420 | 439 | 501 => C::FeatureNotImplemented,
        407 => C::RegistrationRequired,
        408 | 504 => C::RemoteServerTimeout,
        413 | 414 | 440 | 489 | 513 => C::PolicyViolation,
        423 => C::ResourceConstraint,
        430 | 480 | 486 | 487 | 600 | 603 => C::RecipientUnavailable,
        491 => C::UnexpectedRequest,
        500 | 503 => C::InternalServerError,
        502 => C::RemoteServerNotFound,
        300..=399 => C::Redirect { new_address: None },
        400..=499 => C::BadRequest,
        500..=599 => C::InternalServerError,
        _ => C::RecipientUnavailable,
    }
}

/// The error type that RFC 6120 §8.3.3 gives each condition: whether the sender may retry.
pub fn error_type(condition: &DefinedCondition) -> ErrorType {
    use DefinedCondition as C;
    match condition {
        C::BadRequest | C::JidMalformed | C::NotAcceptable | C::PolicyViolation => {
            ErrorType::Modify
        }
        C::Redirect { .. } => ErrorType::Modify,
        C::Forbidden | C::NotAuthorized | C::RegistrationRequired | C::SubscriptionRequired => {
            ErrorType::Auth
        }
        C::RecipientUnavailable
        | C::RemoteServerTimeout
        | C::ResourceConstraint
        | C::UnexpectedRequest => ErrorType::Wait,
        _ => ErrorType::Cancel,
    }
}

/// The condition's element name, as users read it in an ERROR notice.
pub fn condition_name(condition: &DefinedCondition) -> &'static str {
    use DefinedCondition as C;
    match condition {
        C::BadRequest => "bad-request",
        C::Conflict => "conflict",
        C::FeatureNotImplemented => "feature-not-implemented",
        C::Forbidden => "forbidden",
        C::Gone { .. } => "gone",
        C::InternalServerError => "internal-server-error",
        C::ItemNotFound => "item-not-found",
        C::JidMalformed => "jid-malformed",
        C::NotAcceptable => "not-acceptable",
        C::NotAllowed => "not-allowed",
        C::NotAuthorized => "not-authorized",
        C::PolicyViolation => "policy-violation",
        C::RecipientUnavailable => "recipient-unavailable",
        C::Redirect { .. } => "redirect",
        C::RegistrationRequired => "registration-required",
        C::RemoteServerNotFound => "remote-server-not-found",
        C::RemoteServerTimeout => "remote-server-timeout",
        C::ResourceConstraint => "resource-constraint",
        C::ServiceUnavailable => "service-unavailable",
        C::SubscriptionRequired => "subscription-required",
        C::UndefinedCondition => "undefined-condition",
        C::UnexpectedRequest => "unexpected-request",
    }
}

/// The SIP status for an XMPP error condition (RFC 7247 §7.1, Table 2). `full_jid` picks
/// between the 4xx and 6xx answers where the table offers both (4xx for one resource, 6xx
/// for the whole entity).
pub fn status_for_condition(condition: &DefinedCondition, full_jid: bool) -> u16 {
    use DefinedCondition as C;
    let (one, all) = match condition {
        C::BadRequest
        | C::Conflict
        | C::JidMalformed
        | C::SubscriptionRequired
        | C::UndefinedCondition => (400, 400),
        C::FeatureNotImplemented => (405, 501),
        C::Forbidden => (403, 603),
        C::Gone {
            new_address: Some(_),
        } => (301, 301),
        C::Gone { new_address: None } => (410, 410),
        C::InternalServerError | C::ResourceConstraint => (500, 500),
        C::ItemNotFound => (404, 604),
        C::NotAcceptable => (406, 606),
        C::NotAllowed | C::PolicyViolation => (403, 403),
        C::NotAuthorized => (401, 401),
        C::RecipientUnavailable => (480, 600),
        C::Redirect { .. } => (302, 302),
        C::RegistrationRequired => (407, 407),
        C::RemoteServerNotFound => (404, 404),
        C::RemoteServerTimeout => (408, 408),
        // Note (5): 503 is NOT RECOMMENDED; 403 and 405 are the closest.
        C::ServiceUnavailable => (403, 403),
        C::UnexpectedRequest => (491, 491),
    };
    if full_jid { one } else { all }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_to_xmpp_table() {
        let cases = [
            (302, "redirect"),
            (301, "gone"),
            (400, "bad-request"),
            (401, "not-authorized"),
            (403, "forbidden"),
            (404, "item-not-found"),
            (405, "feature-not-implemented"),
            (408, "remote-server-timeout"),
            (415, "not-acceptable"),
            (480, "recipient-unavailable"),
            (486, "recipient-unavailable"),
            (489, "policy-violation"),
            (491, "unexpected-request"),
            (502, "remote-server-not-found"),
            (503, "internal-server-error"),
            (603, "recipient-unavailable"),
            (604, "item-not-found"),
            (399, "redirect"),
            (499, "bad-request"),
            (599, "internal-server-error"),
            (699, "recipient-unavailable"),
        ];
        for (code, name) in cases {
            assert_eq!(condition_name(&condition_for_status(code)), name, "{code}");
        }
    }

    #[test]
    fn xmpp_to_sip_table() {
        use DefinedCondition as C;
        assert_eq!(status_for_condition(&C::ItemNotFound, true), 404);
        assert_eq!(status_for_condition(&C::ItemNotFound, false), 604);
        assert_eq!(status_for_condition(&C::FeatureNotImplemented, true), 405);
        assert_eq!(status_for_condition(&C::FeatureNotImplemented, false), 501);
        assert_eq!(status_for_condition(&C::ServiceUnavailable, false), 403);
        assert_eq!(
            status_for_condition(&C::Gone { new_address: None }, false),
            410
        );
        assert_eq!(
            status_for_condition(
                &C::Gone {
                    new_address: Some("xmpp:x@y".into())
                },
                false
            ),
            301
        );
        assert_eq!(status_for_condition(&C::RemoteServerTimeout, false), 408);
    }
}
