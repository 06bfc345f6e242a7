//! The observers: clients subscribed with `presence: true`, some on each
//! node, recording every presence frame they get (`presence` snapshots and
//! `user_presence` events) with its arrival time and size, and the
//! channel's count as the frames tell it. Also what a storm looked like to
//! them ([`Storm`]): presence frames per batch interval, bursts, bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::channel::{Channel, Id};
use switchboard::presence::node::BATCH_INTERVAL;
use switchboard_harness::bench::{self, delivery::CLIENT_READ_BUFFER, Gateway, Ws};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::crowd::user_token;

/// Frames closer than this to the one before are one burst: what one
/// batch sent (batches are [`BATCH_INTERVAL`] apart).
pub const BURST_GAP: Duration = Duration::from_millis(50);

/// Offsets tried when aligning the intervals to the batches' arrivals.
const ALIGNMENTS: u32 = 20;

/// One presence frame as it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub bytes: usize,
    /// A user's change (`user_presence`): who and which way; `None` for a
    /// snapshot (`presence`).
    pub change: Option<(Id, bool)>,
    /// The channel's count once this frame was applied.
    pub count: i64,
    /// The answer to this observer's own `presence` request.
    pub asked: bool,
}

/// A client on one node watching the channel's presence.
pub struct Observer {
    pub node: &'static str,
    sink: SplitSink<Ws, Message>,
    channel: Id,
    seen: Arc<Mutex<Vec<Seen>>>,
    reader: JoinHandle<()>,
}

impl Observer {
    /// User `i` connects to `gateway` (node `node`), subscribes to `channel`
    /// with `presence: true`, and records from then on.
    pub async fn connect(gateway: &Gateway, node: &'static str, channel: Id, i: usize) -> Observer {
        let token = user_token(Id::new_v4(), i, channel);
        let mut ws = bench::connect_gateway(&gateway.ws_url(&token), CLIENT_READ_BUFFER).await;
        let subscribe = json!({"type": "subscribe", "channel": Channel::Chat(channel).to_string(), "presence": true});
        ws.send(Message::Text(subscribe.to_string().into()))
            .await
            .expect("send subscribe");
        loop {
            let frame = bench::next_text(&mut ws).await;
            match bench::control_type(&frame).as_deref() {
                Some("subscribed") => break,
                Some("error") => panic!("observer's subscribe refused: {frame}"),
                _ => {}
            }
        }
        let (sink, mut stream) = ws.split();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let reader = tokio::spawn(async move {
            let mut count = 0i64;
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let at = Instant::now();
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let data = &frame["data"];
                let change = match frame["type"].as_str() {
                    Some("presence") => {
                        count = data["count"].as_i64().unwrap_or(count);
                        None
                    }
                    Some("user_presence") => {
                        let user = data["user_id"].as_str().and_then(|u| u.parse().ok());
                        let online = data["online"].as_bool().unwrap_or(false);
                        count += if online { 1 } else { -1 };
                        user.map(|user| (user, online))
                    }
                    _ => continue,
                };
                let seen = Seen {
                    at,
                    bytes: text.len(),
                    change,
                    count,
                    asked: data.get("request_id").is_some(),
                };
                record.lock().expect("record").push(seen);
            }
        });
        Observer {
            node,
            sink,
            channel,
            seen,
            reader,
        }
    }

    /// Asks for the channel's snapshot (a `presence` frame with a
    /// `request_id`): its answer sets the count exactly. The snapshot sent
    /// after `subscribed` may hold users whose `user_presence` follows in
    /// the next batch, which a count (unlike a set of users) takes twice.
    pub async fn ask(&mut self) {
        let frame = json!({"type": "presence", "channel": Channel::Chat(self.channel).to_string(), "request_id": "ask"});
        self.sink
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send presence");
    }

    /// The channel's count as the frames so far tell it.
    pub fn count(&self) -> i64 {
        self.seen
            .lock()
            .expect("record")
            .last()
            .map_or(0, |s| s.count)
    }

    /// The frames the gateway sent on its own (not answers to [`Self::ask`])
    /// that arrived from `from` on.
    pub fn since(&self, from: Instant) -> Vec<Seen> {
        let seen = self.seen.lock().expect("record");
        seen.iter()
            .filter(|s| s.at >= from && !s.asked)
            .cloned()
            .collect()
    }

    /// When `user`'s change to `online` arrived, after `after`.
    pub fn saw(&self, user: Id, online: bool, after: Instant) -> Option<Instant> {
        let seen = self.seen.lock().expect("record");
        seen.iter()
            .rev()
            .take_while(|s| s.at >= after)
            .filter(|s| s.change == Some((user, online)))
            .map(|s| s.at)
            .last()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What one observer got during a storm.
pub struct Watched {
    pub node: &'static str,
    pub frames: usize,
    pub snapshots: usize,
    pub bytes: usize,
    /// Frames per interval, the intervals counted from the storm's start:
    /// every interval up to the last frame, empty ones included.
    pub per_interval: Vec<usize>,
    /// The most frames in one interval when the intervals are aligned to
    /// this observer's arrivals as well as they can be (the best of
    /// [`ALIGNMENTS`] offsets): batch boundaries, not the clock's.
    pub most_aligned: usize,
    /// The most frames in one burst ([`BURST_GAP`]): one batch's frames.
    pub most_in_burst: usize,
    /// The most `user_presence` events in one burst: a batch whose changes
    /// went out one by one rather than as the snapshot.
    pub most_events_in_burst: usize,
    /// The shortest time from one burst's first frame to the next's.
    pub shortest_burst_gap: Option<Duration>,
    /// When the largest burst began, from the storm's start.
    pub largest_burst_at: Option<Duration>,
    /// When the count reached the storm's target, if it did.
    pub reached: Option<Instant>,
}

impl Watched {
    pub fn new(node: &'static str, seen: &[Seen], from: Instant, target: i64) -> Watched {
        let interval = BATCH_INTERVAL.as_nanos();
        let offsets = |at: Instant| at.duration_since(from).as_nanos();
        let buckets = |shift: u128| -> Vec<usize> {
            let mut out = Vec::new();
            for s in seen {
                let i = ((offsets(s.at) + shift) / interval) as usize;
                if out.len() <= i {
                    out.resize(i + 1, 0);
                }
                out[i] += 1;
            }
            out
        };
        let per_interval = buckets(0);
        let most_aligned = (0..ALIGNMENTS)
            .map(|k| {
                let shift = interval * u128::from(k) / u128::from(ALIGNMENTS);
                buckets(shift).into_iter().max().unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        // (first frame, frames, `user_presence` events) of each burst.
        let mut bursts: Vec<(Instant, usize, usize)> = Vec::new();
        let mut last: Option<Instant> = None;
        for s in seen {
            let event = usize::from(s.change.is_some());
            match (last, bursts.last_mut()) {
                (Some(prev), Some(burst)) if s.at.duration_since(prev) < BURST_GAP => {
                    burst.1 += 1;
                    burst.2 += event;
                }
                _ => bursts.push((s.at, 1, event)),
            }
            last = Some(s.at);
        }
        Watched {
            node,
            frames: seen.len(),
            snapshots: seen.iter().filter(|s| s.change.is_none()).count(),
            bytes: seen.iter().map(|s| s.bytes).sum(),
            per_interval,
            most_aligned,
            most_in_burst: bursts.iter().map(|b| b.1).max().unwrap_or(0),
            most_events_in_burst: bursts.iter().map(|b| b.2).max().unwrap_or(0),
            // The first of the largest (`max_by_key` keeps the last).
            largest_burst_at: bursts
                .iter()
                .rev()
                .max_by_key(|b| b.1)
                .map(|b| b.0.duration_since(from)),
            shortest_burst_gap: bursts.windows(2).map(|w| w[1].0 - w[0].0).min(),
            reached: seen.iter().find(|s| s.count == target).map(|s| s.at),
        }
    }

    pub fn most_per_interval(&self) -> usize {
        self.per_interval.iter().copied().max().unwrap_or(0)
    }
}

/// What every observer got during one storm.
pub struct Storm {
    pub watched: Vec<Watched>,
}

impl Storm {
    /// The most presence frames one observer got in one interval counted
    /// from the storm's start.
    pub fn most_per_interval(&self) -> usize {
        self.watched
            .iter()
            .map(Watched::most_per_interval)
            .max()
            .unwrap_or(0)
    }

    /// The same with each observer's intervals aligned to its arrivals.
    pub fn most_aligned(&self) -> usize {
        self.watched
            .iter()
            .map(|w| w.most_aligned)
            .max()
            .unwrap_or(0)
    }

    pub fn most_in_burst(&self) -> usize {
        self.watched
            .iter()
            .map(|w| w.most_in_burst)
            .max()
            .unwrap_or(0)
    }

    pub fn most_events_in_burst(&self) -> usize {
        self.watched
            .iter()
            .map(|w| w.most_events_in_burst)
            .max()
            .unwrap_or(0)
    }

    /// When the observers' largest bursts began, from the storm's start:
    /// the earliest and the latest.
    pub fn largest_bursts_at(&self) -> Option<(Duration, Duration)> {
        let at = self.watched.iter().filter_map(|w| w.largest_burst_at);
        at.clone().min().zip(at.max())
    }

    pub fn shortest_burst_gap(&self) -> Option<Duration> {
        self.watched
            .iter()
            .filter_map(|w| w.shortest_burst_gap)
            .min()
    }

    /// How many (observer, interval) pairs got 0, 1, 2, … frames, over the
    /// intervals up to each observer's last frame.
    pub fn distribution(&self) -> BTreeMap<usize, usize> {
        let mut out = BTreeMap::new();
        for w in &self.watched {
            for &n in &w.per_interval {
                *out.entry(n).or_insert(0) += 1;
            }
        }
        out
    }

    /// (min, mean, max) of a figure over the observers.
    pub fn spread(&self, figure: impl Fn(&Watched) -> usize) -> (usize, f64, usize) {
        let values: Vec<usize> = self.watched.iter().map(figure).collect();
        let min = values.iter().copied().min().unwrap_or(0);
        let max = values.iter().copied().max().unwrap_or(0);
        let mean = values.iter().sum::<usize>() as f64 / values.len().max(1) as f64;
        (min, mean, max)
    }

    /// Observers whose count never reached the target.
    pub fn short(&self) -> usize {
        self.watched.iter().filter(|w| w.reached.is_none()).count()
    }

    /// The observers of `node`: from `after` to each one's count reaching
    /// the target, sorted, in nanoseconds.
    pub fn reached_after(&self, node: &str, after: Instant) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .watched
            .iter()
            .filter(|w| w.node == node)
            .filter_map(|w| w.reached)
            .map(|at| at.saturating_duration_since(after).as_nanos() as u64)
            .collect();
        out.sort_unstable();
        out
    }
}
