//! The property test: a connection with two subscriptions driven through
//! random interleavings of publishes, live deliveries, lag, reads, late log
//! answers and resubscribes against the model node; every subscription
//! must get every event of its channel after its start exactly once, in
//! order.

use super::*;

#[derive(Clone, Debug)]
enum Move {
    /// An event is stored on channel 0, 1, or another one.
    Publish(u8),
    /// The connection takes one delivery from its queue.
    TakeLive,
    /// The connection sees the lag flag.
    Lagged,
    /// A read of channel 0 or 1 returns its next step.
    TakeRead(u8),
    /// The oldest plan in flight is answered (the log plans it now).
    AnswerPlan,
    /// The oldest probe in flight is answered (with the log as it was when
    /// it was asked).
    AnswerProbe,
    /// The client unsubscribes channel 0 or 1, if subscribed.
    Unsubscribe(u8),
    /// The client subscribes channel 0 or 1 from `back` events before the
    /// end, if not subscribed.
    Subscribe(u8, u8),
    /// The outbox is written to the client.
    Flush,
}

fn a_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => (0u8..3).prop_map(Move::Publish),
        3 => Just(Move::TakeLive),
        1 => Just(Move::Lagged),
        3 => (0u8..2).prop_map(Move::TakeRead),
        2 => Just(Move::AnswerPlan),
        2 => Just(Move::AnswerProbe),
        1 => (0u8..2).prop_map(Move::Unsubscribe),
        1 => (0u8..2, 0u8..6).prop_map(|(c, back)| Move::Subscribe(c, back)),
        2 => Just(Move::Flush),
    ]
}

/// What the client saw: per channel, the subscription in progress (its
/// start) and the seqs it got; finished ones are checked as they end.
#[derive(Default)]
struct Client {
    /// request id → start (`since_seq`).
    asked: HashMap<String, u64>,
    current: HashMap<Channel, (u64, Vec<u64>)>,
    /// Subscriptions that ended: (channel, start, seqs).
    ended: Vec<(Channel, u64, Vec<u64>)>,
}

impl Client {
    fn read(&mut self, frames: Vec<Value>) -> Result<(), TestCaseError> {
        for frame in frames {
            let kind = frame["type"].as_str().unwrap_or_default();
            match kind {
                "subscribed" => {
                    let channel =
                        Channel::parse(frame["data"]["channel"].as_str().unwrap_or_default())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let id = frame["data"]["request_id"].as_str().unwrap_or_default();
                    let start = self.asked.remove(id).unwrap_or(0);
                    prop_assert!(
                        !self.current.contains_key(&channel),
                        "subscribed twice: {}",
                        frame
                    );
                    self.current.insert(channel, (start, Vec::new()));
                }
                "unsubscribed" => {
                    let channel =
                        Channel::parse(frame["data"]["channel"].as_str().unwrap_or_default())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if let Some((start, seqs)) = self.current.remove(&channel) {
                        self.ended.push((channel, start, seqs));
                    }
                }
                _ => {
                    if let Some(seq) = frame["seq"].as_u64() {
                        let channel = Channel::parse(frame["channel"].as_str().unwrap_or_default())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let current = self.current.get_mut(&channel);
                        prop_assert!(
                            current.is_some(),
                            "an event outside a subscription: {}",
                            frame
                        );
                        if let Some((_, seqs)) = current {
                            seqs.push(seq);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_subscription_gets_its_events_exactly_once_in_order(
        window in any::<bool>(),
        queue_capacity in 1usize..6,
        history in proptest::collection::vec(0u8..3, 0..12),
        moves in proptest::collection::vec(a_move(), 0..250),
    ) {
        let mut node = Model::new(window);
        node.queue_capacity = queue_capacity;
        let channels = [chat(), chat()];
        let pick = |i: u8| if i < 2 { channels[i as usize] } else { chat() };
        for c in history {
            node.publish(pick(c));
        }
        let mut conn = state();
        conn.open(&mut node, opened(BTreeMap::new()));
        let (mut driver, mut client) = (Driver::default(), Client::default());
        let mut requests = 0u64;
        for next in moves {
            match next {
                Move::Publish(c) => {
                    node.publish(pick(c));
                }
                Move::TakeLive => {
                    if let Some(d) = node.queue.pop_front() {
                        conn.on_delivery(&mut node, d);
                    }
                }
                Move::Lagged => {
                    if std::mem::take(&mut node.lagged) {
                        conn.on_lagged(&mut node);
                    }
                }
                Move::TakeRead(c) => {
                    driver.read(&mut conn, &mut node, channels[c as usize]);
                }
                Move::AnswerPlan => {
                    if let Some((channel, ticket, planned)) = driver.plans.pop_front() {
                        conn.on_answer(&mut node, Answer::Planned { channel, ticket, result: Ok(planned) })
                            .expect("a plan's answer never closes");
                    }
                }
                Move::AnswerProbe => {
                    if let Some((channel, ticket, from, target, next)) = driver.probes.pop_front() {
                        conn.on_answer(&mut node, Answer::Probed { channel, ticket, from, target, result: Ok(next) })
                            .expect("a probe's answer never closes");
                    }
                }
                Move::Unsubscribe(c) => {
                    let channel = channels[c as usize];
                    if node.joined.contains(&channel) {
                        conn.on_frame(&mut node, ClientFrame::Unsubscribe { channel, request_id: None })
                            .expect("unsubscribe");
                    }
                }
                Move::Subscribe(c, back) => {
                    let channel = channels[c as usize];
                    if !node.joined.contains(&channel) {
                        requests += 1;
                        let id = format!("r{requests}");
                        let start = node.last_seq().saturating_sub(u64::from(back));
                        client.asked.insert(id.clone(), start);
                        conn.on_frame(&mut node, subscribe(channel, Some(start), &id)).expect("subscribe");
                    }
                }
                Move::Flush => {
                    client.read(written(&mut conn))?;
                }
            }
            driver.run(&mut conn, &node);
        }
        // Publishing stops; everything in flight is answered and read.
        settle(&mut conn, &mut node, &mut driver);
        client.read(written(&mut conn))?;
        prop_assert!(driver.reads.is_empty(), "every replay ends: {:?}", driver.reads);
        for (channel, (start, seqs)) in &client.current {
            let expected: Vec<u64> = node.of_channel_after(*channel, *start).map(|e| e.seq).collect();
            prop_assert_eq!(seqs, &expected, "channel {} from {}", channel, start);
        }
        for (channel, start, seqs) in &client.ended {
            let all: Vec<u64> = node.of_channel_after(*channel, *start).map(|e| e.seq).collect();
            prop_assert_eq!(seqs.as_slice(), &all[..seqs.len()], "ended {} from {}", channel, start);
        }
    }
}
