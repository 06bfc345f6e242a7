//! `permessage-deflate` (RFC 7692): what a client's offer is answered with,
//! and the compression of the server's messages.
//!
//! The gateway always answers with no context takeover either way, so a
//! connection keeps no compressor or decompressor between messages: an
//! idle connection costs the same with the extension as without. A live
//! event is compressed at most once per node, by the first subscriber
//! that needs it, into a slot beside its encoded JSON ([`Deflated`]); every
//! other subscriber that negotiated the extension sends the same bytes.
//! Compression runs on a compressor kept per worker thread and reset for
//! every message. Reading compressed client messages is
//! [`super::inflate`]'s.

use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use warp::http::{header, HeaderMap, HeaderValue};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// Messages shorter than this go uncompressed: a few dozen bytes of JSON
/// seldom shrink by more than a frame header's worth.
pub const MIN_DEFLATE_BYTES: usize = 64;

/// The compression level (zlib's 0 to 9). Chat envelopes are a few hundred
/// bytes: higher levels find little more in them.
const LEVEL: u32 = 6;

/// The trailer a sync flush ends with, which the sender removes and the
/// receiver appends (RFC 7692, section 7.2.1).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a connection agreed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// The largest LZ77 window the client lets the server use (8 to 15).
    /// The node compresses with a 15-bit window only, so a client that
    /// asked for less gets its messages uncompressed (RFC 7692 lets a
    /// sender leave any message uncompressed); its own compressed
    /// messages are still read.
    pub server_window_bits: u8,
}

impl Deflate {
    /// Whether the server's messages to this client may be compressed.
    pub fn compresses(&self) -> bool {
        self.server_window_bits == 15
    }
}

/// Reads the client's `Sec-WebSocket-Extensions` offers and accepts the
/// first `permessage-deflate` offer it can honour: its parameters are
/// known, each at most once, with valid values. Returns the agreement and
/// the response header's value; `None` declines (the upgrade goes on
/// without the extension).
pub fn negotiate(headers: &HeaderMap) -> Option<(Deflate, HeaderValue)> {
    let deflate = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(accept_offer)?;
    let mut answer = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
    if deflate.server_window_bits < 15 {
        answer.push_str(&format!(
            "; server_max_window_bits={}",
            deflate.server_window_bits
        ));
    }
    Some((deflate, HeaderValue::from_str(&answer).ok()?))
}

/// One offer (`name; param; param=value`), if it is `permessage-deflate`
/// with parameters the gateway can honour.
fn accept_offer(offer: &str) -> Option<Deflate> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_window_bits = 15;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                server_window_bits = window_bits(value?)?;
                2
            }
            // Without a value the client only says it understands the
            // parameter; with one, it will use at most that window, which
            // a 15-bit inflater reads either way.
            "client_max_window_bits" => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(Deflate { server_window_bits })
}

/// A parameter value, without the quotes of a quoted string.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(value),
    }
}

/// A window size: 8 to 15, written as plain digits (RFC 7692, section 7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

thread_local! {
    /// This thread's compressor, made at its first message and reset for
    /// each one (no context takeover).
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// `message` compressed as one `permessage-deflate` message payload (raw
/// DEFLATE, the sync flush's trailer removed), or `None` when it is short
/// or would not shrink: it then goes uncompressed.
pub fn deflate(message: &[u8]) -> Option<Bytes> {
    if message.len() < MIN_DEFLATE_BYTES {
        return None;
    }
    COMPRESSOR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let compressor = slot.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        compressor.reset();
        // Room for the message itself and the trailer: output that does not
        // fit is not worth sending compressed.
        let mut out = Vec::with_capacity(message.len() + TAIL.len());
        let status = compressor.compress_vec(message, &mut out, FlushCompress::Sync);
        let complete = matches!(status, Ok(Status::Ok | Status::BufError))
            && compressor.total_in() == message.len() as u64
            && out.len() < out.capacity()
            && out.ends_with(&TAIL);
        if !complete {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        (out.len() < message.len()).then(|| Bytes::from(out))
    })
}

/// A message's compressed form, made at most once (by the first
/// connection that sends it compressed) and shared by every other.
#[derive(Debug, Default)]
pub struct Deflated(OnceLock<Option<Bytes>>);

impl Deflated {
    /// The compressed payload of `message` (whose slot this is), or `None`
    /// when it goes uncompressed.
    pub fn of(&self, message: &[u8]) -> Option<Bytes> {
        self.0.get_or_init(|| deflate(message)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn offer(value: &str) -> Option<(Deflate, String)> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(value).unwrap(),
        );
        negotiate(&headers).map(|(d, v)| (d, v.to_str().unwrap().to_string()))
    }

    const ANSWER: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn offers_are_answered_with_no_context_takeover() {
        for value in [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=\"15\"",
            "x-webkit-deflate-frame, permessage-deflate",
            "permessage-deflate; bogus, permessage-deflate",
        ] {
            let (deflate, answer) = offer(value).unwrap_or_else(|| panic!("{value}"));
            assert!(deflate.compresses(), "{value}");
            assert_eq!(answer, ANSWER, "{value}");
        }
        let (deflate, answer) = offer("permessage-deflate; server_max_window_bits=9").unwrap();
        assert_eq!(deflate.server_window_bits, 9);
        assert!(!deflate.compresses());
        assert_eq!(answer, format!("{ANSWER}; server_max_window_bits=9"));
    }

    #[test]
    fn offers_that_cannot_be_honoured_are_declined() {
        for value in [
            "x-webkit-deflate-frame",
            "permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=ab",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        ] {
            assert_eq!(offer(value), None, "{value}");
        }
    }

    fn inflate(payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut inflater = Decompress::new(false);
        let mut out = Vec::with_capacity(64 * 1024);
        inflater
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn messages_compress_alone_and_short_ones_stay_as_they_are() {
        let json = br#"{"type":"channel_message","timestamp":"2026-12-06T10:00:00.000Z","data":{"channel_id":"0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d","content":"hello hello hello"}}"#;
        let first = deflate(json).unwrap();
        assert!(first.len() < json.len());
        assert_eq!(inflate(&first), json);
        // No context carried over: the same message compresses the same.
        assert_eq!(deflate(json).unwrap(), first);
        assert_eq!(deflate(b"{\"type\":\"pong\"}"), None);
        let random: Vec<u8> = (0..512).map(|_| fastrand::u8(..)).collect();
        assert_eq!(deflate(&random), None);
        let slot = Deflated::default();
        assert_eq!(slot.of(json), Some(first.clone()));
        assert_eq!(slot.of(b"not looked at again"), Some(first));
    }
}
