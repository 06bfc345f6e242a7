//! Property-based fuzzing of the parsers that face untrusted input: client
//! frames (`gateway::protocol::decode`), stored messages
//! (`log::subject::decode`) and channel names (`Channel::parse`). None may
//! panic; whatever they accept must satisfy the protocol's invariants, and the
//! frame decoder accepts exactly what the protocol allows. `just fuzz` runs the
//! ignored long run (`PROPTEST_CASES`, default 20000).
//!
//! This file holds the runner and the long run; the strategies are a
//! module of their own, and each parser's properties and tests are one
//! module.

mod channels;
mod frames;
mod stored;
mod strategies;

use channels::channel_parse;
use frames::{decode_any_json, decode_any_string, decode_near_valid_frames};
use stored::subject_decode;
use strategies::*;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use switchboard::channel::{Channel, Id};
use switchboard::event::{parse_timestamp, Event, EventData, EventType, UserTyping};
use switchboard::gateway::protocol::{
    self, ClientFrame, ErrorCode, Since, MAX_EPOCH_LEN, MAX_REQUEST_ID_LEN,
};
use switchboard::log::subject;
use switchboard::schema::Schemas;
use switchboard_harness::data_value;
use uuid::Uuid;

/// Cases per property in a plain `cargo test`.
const QUICK: u32 = 256;

/// Cases per property in the ignored long run, unless PROPTEST_CASES says.
const LONG: u32 = 20_000;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No regression files: this suite must not write into the repository.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn long_cases() -> u32 {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        // proptest's default config reads PROPTEST_CASES.
        ProptestConfig::default().cases
    } else {
        LONG
    }
}

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// The long run, for `just fuzz`: every property with PROPTEST_CASES cases
/// (20000 unless set).
#[test]
#[ignore = "long fuzzing run: `just fuzz`"]
fn fuzz_long_run() {
    let cases = long_cases();
    decode_any_string(cases);
    decode_any_json(cases);
    decode_near_valid_frames(cases);
    subject_decode(cases);
    channel_parse(cases);
}
