//! Commands SIP users type as MESSAGE bodies, as the SER `jabber` module's sample script
//! recognised them: `:online`/`:on` and `:offline`/`:off` switch the user's XMPP presence,
//! `:join [password]` and `:exit` enter and leave the conference the MESSAGE is addressed to,
//! and `:allow ADDRESS`/`:deny ADDRESS` answer an XMPP user's request to see the user's
//! presence. Pure.
//!
//! A body is a command only when all of it is one: surrounding whitespace is ignored, and the
//! command word is compared without regard to case. Anything else is a message.

/// A command typed by a SIP user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `:online` or `:on`: available presence to every subscribed contact.
    Online,
    /// `:offline` or `:off`: unavailable presence, and leave all conferences.
    Offline,
    /// `:join [password]`: join the conference the MESSAGE is addressed to.
    Join {
        /// The room password, if the room has one.
        password: Option<String>,
    },
    /// `:exit`: leave the conference the MESSAGE is addressed to.
    Exit,
    /// `:allow ADDRESS`: let that XMPP user see this user's presence.
    Allow(String),
    /// `:deny ADDRESS`: refuse that XMPP user's presence subscription.
    Deny(String),
}

/// Reads a MESSAGE body as a command; `None` means it is an ordinary message.
pub fn parse(body: &str) -> Option<Command> {
    let text = body.trim();
    let rest = text.strip_prefix(':')?;
    let (word, arg) = match rest.split_once(char::is_whitespace) {
        Some((word, arg)) => (word, arg.trim()),
        None => (rest, ""),
    };
    let word = word.to_ascii_lowercase();
    let arg = (!arg.is_empty()).then(|| arg.to_owned());
    match (word.as_str(), arg) {
        ("online" | "on", None) => Some(Command::Online),
        ("offline" | "off", None) => Some(Command::Offline),
        ("join", password) => Some(Command::Join { password }),
        ("exit", None) => Some(Command::Exit),
        ("allow", Some(who)) if !who.contains(char::is_whitespace) => Some(Command::Allow(who)),
        ("deny", Some(who)) if !who.contains(char::is_whitespace) => Some(Command::Deny(who)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let cases = [
            (":online", Some(Command::Online)),
            (":on", Some(Command::Online)),
            ("  :ONLINE\r\n", Some(Command::Online)),
            (":offline", Some(Command::Offline)),
            (":off\n", Some(Command::Offline)),
            (":join", Some(Command::Join { password: None })),
            (
                ":join s3cret",
                Some(Command::Join {
                    password: Some("s3cret".into()),
                }),
            ),
            (":exit", Some(Command::Exit)),
            (
                ":allow romeo@montague.lit",
                Some(Command::Allow("romeo@montague.lit".into())),
            ),
            (
                ":deny sip:romeo*montague.lit@jabber.x.com",
                Some(Command::Deny("sip:romeo*montague.lit@jabber.x.com".into())),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body), expected, "{body:?}");
        }
    }

    #[test]
    fn ordinary_messages() {
        for body in [
            "online",
            "hello :online",
            ":online now please",
            ":)",
            ":",
            ":allow",
            ":deny a b",
            ":exit now",
            "",
        ] {
            assert_eq!(parse(body), None, "{body:?}");
        }
    }
}
