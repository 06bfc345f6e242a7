//! What validating an event of an added type costs against a built-in
//! one, in this process (no NATS, no gateway): `reaction_added`, added by
//! a catalog directory with the rules of `channel_message` (its schema as
//! the gateway embeds it: ids matching the UUID pattern, `username` a
//! string or null, `content` a string, all five required) and routed to
//! its channel, against `channel_message` itself, with the same data.
//!
//! Three steps, each for both types:
//! (a) `EventData::decode_kept` of the `data` text: what every decode
//!     runs (typed serde for `channel_message`; a `serde_json::Value`,
//!     the type's compiled schema and its routes for `reaction_added`);
//! (b) `schema::event_from_body`: the whole validation of `POST
//!     /v1/events` (where the built-in type is also checked against its
//!     JSON Schema);
//! (c) `log::subject::decode_kept`: a stored message read back (subject,
//!     payload, `data`, the copy's channel).
//!
//! Each step runs with two contents of the same length: one with capitals
//! `A`–`F` (as people write), which make the canonicalisation of the kept
//! text parse the object a second time, and one without (the text is
//! kept as it is).
//!
//! Each case runs in batches of `batch` operations; the cases take turns
//! round by round, so that a drift of the machine hits them all alike.
//! Per case: time per operation (all batches' time over all operations),
//! p50/p99 of the batches' time per operation, and operations per second.
//! The target: an added type's p50 time per operation at most 2x the
//! built-in type's, in each step, with either content. The p50 is judged,
//! not the mean, because the benches share two cores with other work and a
//! batch that lost its core pulls the mean.
//!
//! Then the profile, timed the same way: the added type's decode in its
//! parts (parsing into a `Value`, the schema check as the catalog runs it
//! and as a plain `is_valid`, the routes), `decode` against `decode_kept`
//! (their difference is one canonicalisation of the text), and the
//! built-in type's typed decode and the JSON Schema checks that only its
//! publish body gets.
//!
//! The bench allocates with mimalloc, as the gateway does.
//!
//! `cargo bench --bench catalog`: 20 rounds of 10 batches of 1,000
//! operations per case (200,000). Without `--bench` (as `cargo test
//! --all-targets` runs it): a few hundred per case; it checks that every
//! step decodes both types to the same routing and text, and prints no
//! verdict.
//!
//! One file past 500 lines, as a bench target is: the cases, the profile
//! and their inputs are one measurement, read together.

use switchboard_harness::bench;

use std::hint::black_box;
use std::time::Instant;

use serde_json::{json, Value};
use switchboard::catalog::{self, AddedType};
use switchboard::channel::{Channel, Id};
use switchboard::event::{ChannelMessage, EventData, EventType};
use switchboard::log::subject;
use switchboard::schema::{self, Schemas};

use bench::{percentile, thousands};

/// The gateway's allocator (`src/main.rs`): an added type's decode
/// allocates a `Value` tree, and what that costs depends on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The added type measured.
const ADDED: &str = "reaction_added";

/// The built-in type it is measured against.
const BUILTIN: &str = "channel_message";

/// Most an added type's p50 time per operation may be, as a multiple of
/// the built-in type's.
const TARGET_RATIO: f64 = 2.0;

/// The two contents, of the same length: chat as people write it (its
/// capitals `A`–`F` send the kept text's canonicalisation down its slow
/// path, a second parse), and the same without any.
const CONTENTS: [(&str, &str); 2] = [
    (
        "mixed case",
        "Did you see the release notes? Deploy is at 5 PM, ping me if it breaks.",
    ),
    (
        "lower case",
        "did you see the release notes? deploy is at 5 pm, ping me if it breaks.",
    ),
];

/// The steps compared.
const STEPS: [&str; 3] = [
    "(a) EventData::decode_kept",
    "(b) schema::event_from_body",
    "(c) subject::decode_kept",
];

struct Sizes {
    rounds: usize,
    /// Batches per case per round.
    batches: usize,
    /// Operations per batch.
    batch: usize,
}

fn main() {
    let sizes = if bench::full() {
        Sizes {
            rounds: 20,
            batches: 10,
            batch: 1_000,
        }
    } else {
        Sizes {
            rounds: 2,
            batches: 5,
            batch: 20,
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join(format!("{ADDED}.json")),
        added_schema().to_string(),
    )
    .expect("catalog file");
    let loaded = catalog::load(dir.path()).expect("catalog loads");
    assert!(catalog::install(loaded), "the first catalog installed");
    run(&sizes);
}

/// `channel_message`'s schema as the gateway embeds it, without its `$id`,
/// routed to its channel and stored: the same rules, as an added type.
fn added_schema() -> Value {
    let (_, text) = schema::FILES
        .iter()
        .find(|(name, _)| *name == format!("events/{BUILTIN}"))
        .expect("channel_message's schema");
    let mut schema: Value = serde_json::from_str(text).expect("schema JSON");
    let object = schema.as_object_mut().expect("an object schema");
    object.remove("$id");
    object.insert(
        "x-switchboard".into(),
        json!({"routes": [{"channel": "channel_id"}], "stored": true}),
    );
    schema
}

/// One event's `data`, the same for both types.
fn data_text(channel: Id, content: &str) -> String {
    json!({
        "channel_id": channel,
        "message_id": Id::new_v4(),
        "user_id": Id::new_v4(),
        "username": "alice",
        "content": content,
    })
    .to_string()
}

/// What one type's cases run on: its `data` text, its publish body, and a
/// stored copy (subject and payload).
struct Inputs {
    kind: EventType,
    data: String,
    body: Vec<u8>,
    subject: String,
    payload: Vec<u8>,
}

impl Inputs {
    /// Checks each step once: every one decodes to this type, on
    /// `channel`, with the text as given.
    fn new(name: &str, channel: Id, data: &str) -> Inputs {
        let kind = EventType::parse(name).expect("type known");
        let (decoded, raw) = EventData::decode_kept(kind, data).expect("data decodes");
        assert_eq!(decoded.kind(), kind);
        assert_eq!(raw.as_str(), data, "the text is kept as given");
        let data_value: Value = serde_json::from_str(data).expect("JSON");
        let body = json!({"type": name, "id": Id::new_v4(), "data": data_value});
        let body = body.to_string().into_bytes();
        let event = schema::event_from_body(&body).expect("the body is accepted");
        assert_eq!(event.kind(), kind);
        let copies = event.copies();
        assert_eq!(copies.len(), 1, "one copy, on the channel");
        let copy = &copies[0];
        assert_eq!(copy.channel, Channel::Chat(channel));
        let subject = subject::subject(copy.channel, kind);
        let payload =
            subject::encode_payload_kept(event.id, &copy.data, copy.raw_data.as_ref()).to_vec();
        let read = subject::decode_kept(&subject, &payload).expect("the stored copy decodes");
        assert_eq!(
            (read.channel, read.id, &read.data),
            (copy.channel, event.id, &copy.data)
        );
        assert_eq!(read.raw_data.as_str(), data);
        Inputs {
            kind,
            data: data.to_string(),
            body,
            subject,
            payload,
        }
    }
}

/// (a): `EventData::decode_kept` of the `data` text.
fn decode_kept(inputs: &Inputs) -> impl Fn(usize) + '_ {
    move |n| {
        for _ in 0..n {
            black_box(EventData::decode_kept(inputs.kind, black_box(&inputs.data)).is_ok());
        }
    }
}

/// (b): the whole validation of a publish body.
fn from_body(inputs: &Inputs) -> impl Fn(usize) + '_ {
    move |n| {
        for _ in 0..n {
            black_box(schema::event_from_body(black_box(&inputs.body)).is_ok());
        }
    }
}

/// (c): a stored copy read back.
fn stored(inputs: &Inputs) -> impl Fn(usize) + '_ {
    move |n| {
        for _ in 0..n {
            black_box(
                subject::decode_kept(black_box(&inputs.subject), black_box(&inputs.payload))
                    .is_ok(),
            );
        }
    }
}

/// `EventData::decode`: `decode_kept` without the kept text.
fn decode(inputs: &Inputs) -> impl Fn(usize) + '_ {
    move |n| {
        for _ in 0..n {
            black_box(EventData::decode(inputs.kind, black_box(&inputs.data)).is_ok());
        }
    }
}

/// A measured operation: runs `n` of them.
type Op<'a> = Box<dyn Fn(usize) + 'a>;

struct Case<'a> {
    step: &'static str,
    content: &'static str,
    kind: &'static str,
    op: Op<'a>,
    /// Each batch's nanoseconds.
    batches: Vec<u64>,
}

impl<'a> Case<'a> {
    fn new(
        step: &'static str,
        content: &'static str,
        kind: &'static str,
        op: impl Fn(usize) + 'a,
    ) -> Case<'a> {
        Case {
            step,
            content,
            kind,
            op: Box::new(op),
            batches: Vec::new(),
        }
    }

    /// Nanoseconds per operation: all batches' over all operations.
    fn mean_ns(&self, batch: usize) -> f64 {
        self.batches.iter().sum::<u64>() as f64 / (self.batches.len() * batch).max(1) as f64
    }

    /// The batches' time per operation at percentile `p`, in nanoseconds.
    fn percentile_ns(&self, batch: usize, p: f64) -> f64 {
        let mut sorted = self.batches.clone();
        sorted.sort_unstable();
        percentile(&sorted, p) as f64 / batch as f64
    }

    fn p50_ns(&self, batch: usize) -> f64 {
        self.percentile_ns(batch, 50.0)
    }

    fn line(&self, batch: usize) -> String {
        let mean = self.mean_ns(batch);
        format!(
            "{:<40} {:<11} {:<16} {:>6.2} µs/op  p50 {:>5.2}  p99 {:>5.2} µs  {:>10} ops/s",
            self.step,
            self.content,
            self.kind,
            mean / 1e3,
            self.p50_ns(batch) / 1e3,
            self.percentile_ns(batch, 99.0) / 1e3,
            thousands(1e9 / mean.max(1e-9)),
        )
    }

    fn json(&self, batch: usize) -> Value {
        let mean = self.mean_ns(batch);
        json!({
            "ns_per_op": bench::round1(mean),
            "p50_ns": bench::round1(self.p50_ns(batch)),
            "p99_ns": bench::round1(self.percentile_ns(batch, 99.0)),
            "ops_per_s": (1e9 / mean.max(1e-9)).round(),
        })
    }
}

/// The case of `step`, `content` and `kind`.
fn find<'c, 'a>(cases: &'c [Case<'a>], step: &str, content: &str, kind: &str) -> &'c Case<'a> {
    cases
        .iter()
        .find(|c| c.step == step && c.content == content && c.kind == kind)
        .unwrap_or_else(|| panic!("no case {step} / {content} / {kind}"))
}

/// Runs every case: one warm-up batch each, then `rounds` rounds in which
/// each case runs `batches` batches in turn.
fn measure(cases: &mut [Case], sizes: &Sizes) {
    for case in cases.iter() {
        (case.op)(sizes.batch);
    }
    for _ in 0..sizes.rounds {
        for case in cases.iter_mut() {
            for _ in 0..sizes.batches {
                let started = Instant::now();
                (case.op)(sizes.batch);
                case.batches.push(started.elapsed().as_nanos() as u64);
            }
        }
    }
}

/// Both types' inputs for one content.
struct Pair {
    content: &'static str,
    builtin: Inputs,
    added: Inputs,
}

fn run(sizes: &Sizes) {
    let channel = Id::new_v4();
    let pairs: Vec<Pair> = CONTENTS
        .iter()
        .map(|(content, text)| {
            let data = data_text(channel, text);
            Pair {
                content,
                builtin: Inputs::new(BUILTIN, channel, &data),
                added: Inputs::new(ADDED, channel, &data),
            }
        })
        .collect();
    let EventType::Added(index) = pairs[0].added.kind else {
        panic!("{ADDED} is an added type");
    };
    let added_type: &AddedType = index.added().expect("in the catalog");
    let ops = sizes.rounds * sizes.batches * sizes.batch;
    println!(
        "catalog: {ADDED} (channel_message's schema, routed to its channel) against {BUILTIN}, {} bytes of data; {} operations per case in {} rounds of {} batches of {} [{} mode]",
        pairs[0].builtin.data.len(),
        thousands(ops as f64),
        sizes.rounds,
        sizes.batches,
        sizes.batch,
        bench::mode()
    );

    let mut cases = Vec::new();
    for pair in &pairs {
        for (kind, inputs) in [(BUILTIN, &pair.builtin), (ADDED, &pair.added)] {
            let ops: [Op; 3] = [
                Box::new(decode_kept(inputs)),
                Box::new(from_body(inputs)),
                Box::new(stored(inputs)),
            ];
            for (step, op) in STEPS.into_iter().zip(ops) {
                cases.push(Case::new(step, pair.content, kind, op));
            }
        }
    }
    measure(&mut cases, sizes);
    let mut steps = serde_json::Map::new();
    let mut worst = Vec::new();
    for step in STEPS {
        let mut by_content = serde_json::Map::new();
        let mut ratios = Vec::new();
        for (content, _) in CONTENTS {
            let builtin = find(&cases, step, content, BUILTIN);
            let added = find(&cases, step, content, ADDED);
            let ratio = added.p50_ns(sizes.batch) / builtin.p50_ns(sizes.batch).max(1e-9);
            let mean_ratio = added.mean_ns(sizes.batch) / builtin.mean_ns(sizes.batch).max(1e-9);
            println!("  {}", builtin.line(sizes.batch));
            println!("  {}", added.line(sizes.batch));
            println!(
                "    {ADDED} ÷ {BUILTIN}: p50 {ratio:.2}x{} (mean {mean_ratio:.2}x)",
                bench::target_note(&format!("<= {TARGET_RATIO}x"))
            );
            ratios.push(ratio);
            by_content.insert(
                content.to_string(),
                json!({
                    BUILTIN: builtin.json(sizes.batch),
                    ADDED: added.json(sizes.batch),
                    "p50_ratio": bench::round3(ratio),
                    "mean_ratio": bench::round3(mean_ratio),
                }),
            );
        }
        worst.push((step, ratios.into_iter().fold(0.0, f64::max)));
        steps.insert(step.to_string(), Value::Object(by_content));
    }

    let profile = profile(&pairs, added_type, sizes);

    for (step, ratio) in &worst {
        bench::verdict(
            &format!("{step}: {ADDED} at up to {ratio:.2}x {BUILTIN}"),
            *ratio <= TARGET_RATIO,
            &format!("p50 time per operation <= {TARGET_RATIO}x the built-in type's, with either content"),
        );
    }
    bench::print_json(
        "catalog",
        json!({
            "added_type": ADDED,
            "builtin_type": BUILTIN,
            "data_bytes": pairs[0].builtin.data.len(),
            "ops_per_case": ops,
            "rounds": sizes.rounds,
            "batches": sizes.batches,
            "batch": sizes.batch,
            "steps": steps,
            "profile": profile,
            "target_ratio": TARGET_RATIO,
        }),
    );
}

/// Where the time goes: the added type's decode in parts, the built-in
/// type's, and the schema checks only a built-in publish body gets.
/// Prints the parts and the sums; returns them for the JSON line.
fn profile(pairs: &[Pair], added_type: &AddedType, sizes: &Sizes) -> Value {
    let validator =
        jsonschema::draft202012::new(&added_type.schema).expect("the added schema compiles");
    let validator = &validator;
    let mixed = &pairs[0];
    let data: Value = serde_json::from_str(&mixed.added.data).expect("JSON");
    let data = &data;
    let object = data.as_object().expect("an object");
    let body: Value = serde_json::from_slice(&mixed.builtin.body).expect("JSON");
    let body = &body;
    let schemas = Schemas::get();
    let text = &mixed.added.data;
    let content = mixed.content;

    let mut parts = vec![
        Case::new("added: parse data into a Value", content, ADDED, move |n| {
            for _ in 0..n {
                black_box(serde_json::from_str::<Value>(black_box(text)).is_ok());
            }
        }),
        Case::new(
            "added: AddedType::check (iter_errors)",
            content,
            ADDED,
            move |n| {
                for _ in 0..n {
                    black_box(added_type.check(black_box(data)).is_ok());
                }
            },
        ),
        Case::new(
            "added: the same schema, is_valid",
            content,
            ADDED,
            move |n| {
                for _ in 0..n {
                    black_box(validator.is_valid(black_box(data)));
                }
            },
        ),
        Case::new("added: routes (Route::channel)", content, ADDED, move |n| {
            for _ in 0..n {
                for route in &added_type.routes {
                    black_box(route.channel(black_box(object)).is_ok());
                }
            }
        }),
        Case::new("built-in: serde typed decode", content, BUILTIN, move |n| {
            for _ in 0..n {
                black_box(serde_json::from_str::<ChannelMessage>(black_box(text)).is_ok());
            }
        }),
        Case::new(
            "built-in: its JSON Schema (check_data)",
            content,
            BUILTIN,
            {
                let kind = mixed.builtin.kind;
                move |n| {
                    for _ in 0..n {
                        black_box(schemas.check_data(kind, black_box(data)).is_ok());
                    }
                }
            },
        ),
        Case::new("body: parse into a Value", content, BUILTIN, {
            let bytes = &mixed.builtin.body;
            move |n| {
                for _ in 0..n {
                    black_box(serde_json::from_slice::<Value>(black_box(bytes)).is_ok());
                }
            }
        }),
        Case::new(
            "built-in: body's schema (http_publish)",
            content,
            BUILTIN,
            move |n| {
                for _ in 0..n {
                    black_box(schemas.check("http_publish", black_box(body)).is_ok());
                }
            },
        ),
    ];
    for pair in pairs {
        for (kind, inputs) in [(BUILTIN, &pair.builtin), (ADDED, &pair.added)] {
            parts.push(Case::new(
                "EventData::decode",
                pair.content,
                kind,
                decode(inputs),
            ));
            parts.push(Case::new(
                "EventData::decode_kept",
                pair.content,
                kind,
                decode_kept(inputs),
            ));
        }
    }
    measure(&mut parts, sizes);

    println!("  profile (the same data; time per operation):");
    let mut figures = serde_json::Map::new();
    for part in &parts {
        println!("    {}", part.line(sizes.batch));
        figures.insert(
            format!("{} [{}, {}]", part.step, part.content, part.kind),
            part.json(sizes.batch),
        );
    }
    let p50 = |step: &str, content: &str, kind: &str| {
        find(&parts, step, content, kind).p50_ns(sizes.batch) / 1e3
    };
    let (parse, check, is_valid, routes) = (
        p50("added: parse data into a Value", content, ADDED),
        p50("added: AddedType::check (iter_errors)", content, ADDED),
        p50("added: the same schema, is_valid", content, ADDED),
        p50("added: routes (Route::channel)", content, ADDED),
    );
    let mut sums = serde_json::Map::new();
    println!("  where the time goes (p50, µs):");
    for (content, _) in CONTENTS {
        let decode = p50("EventData::decode", content, ADDED);
        let kept = p50("EventData::decode_kept", content, ADDED);
        let builtin_decode = p50("EventData::decode", content, BUILTIN);
        let builtin_kept = p50("EventData::decode_kept", content, BUILTIN);
        let rest = decode - parse - check - routes;
        let second = kept - decode;
        println!(
            "    {content}: {ADDED} decode_kept {kept:.2} = parse {parse:.2} + schema {check:.2} + routes {routes:.2} + the rest of decode (its canonicalisation, copies) {rest:.2} + decode_kept's second canonicalisation {second:.2}"
        );
        println!(
            "    {content}: {BUILTIN} decode_kept {builtin_kept:.2} = typed decode {builtin_decode:.2} + canonicalisation {:.2}",
            builtin_kept - builtin_decode
        );
        sums.insert(
            content.to_string(),
            json!({
                "added_decode_kept_us": bench::round3(kept),
                "added_parse_us": bench::round3(parse),
                "added_schema_us": bench::round3(check),
                "added_routes_us": bench::round3(routes),
                "added_rest_of_decode_us": bench::round3(rest),
                "added_second_canonicalisation_us": bench::round3(second),
                "builtin_decode_kept_us": bench::round3(builtin_kept),
                "builtin_decode_us": bench::round3(builtin_decode),
            }),
        );
    }
    println!(
        "    the added schema with is_valid instead of iter_errors: {is_valid:.2} µs ({:.1}x faster); parse + is_valid + routes: {:.2} µs",
        check / is_valid.max(1e-9),
        parse + is_valid + routes
    );
    json!({"parts": figures, "sums": sums})
}
