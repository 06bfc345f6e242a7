//! Channel names (`Channel::parse`): never a panic, and what parses prints
//! back the same.

use super::*;

pub(crate) fn channel_parse(cases: u32) {
    run(
        cases,
        prop_oneof![channel_text(), any::<String>()],
        |text| {
            if let Ok(channel) = Channel::parse(&text) {
                let shown = channel.to_string();
                prop_assert_eq!(Channel::parse(&shown), Ok(channel));
                prop_assert_eq!(&shown, &text.to_ascii_lowercase());
                // Subjects are built from channels: no NATS token syntax.
                prop_assert!(!shown.contains(['.', '*', '>', ' ']), "{}", shown);
            }
            Ok(())
        },
    );
    let valid = (0..3u8, any::<u128>()).prop_map(|(kind, n)| {
        let id = Id(Uuid::from_u128(n));
        match kind {
            0 => Channel::Chat(id),
            1 => Channel::User(id),
            _ => Channel::Global,
        }
    });
    run(cases, valid, |channel| {
        let shown = channel.to_string();
        prop_assert_eq!(Channel::parse(&shown), Ok(channel));
        // Ids are accepted in upper case too, and written in lower case.
        let upper = match channel {
            Channel::Chat(id) => format!("channel:{}", id.to_string().to_uppercase()),
            Channel::User(id) => format!("user:{}", id.to_string().to_uppercase()),
            Channel::Global => "global".to_string(),
        };
        prop_assert_eq!(Channel::parse(&upper), Ok(channel));
        Ok(())
    });
}

#[test]
fn channel_parse_never_panics_and_round_trips() {
    channel_parse(QUICK);
}
