//! One unit test per rule: a replay the log must plan waits while the other
//! subscription goes on, a stale answer is dropped, restores go on in the
//! background with their cursors kept, a cursor is saved once confirmed, a
//! recreated stream restarts every subscription.

use super::*;

#[test]
fn a_replay_the_log_must_plan_waits_while_the_other_subscription_goes_on() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let (live, old) = (chat(), chat());
    for _ in 0..3 {
        node.publish(old);
    }
    conn.on_frame(&mut node, subscribe(live, None, "live"))
        .unwrap();
    conn.on_frame(&mut node, subscribe(old, Some(0), "old"))
        .unwrap();
    let plan = effects(&mut conn)
        .into_iter()
        .find_map(|e| match e {
            Effect::Plan {
                channel,
                ticket,
                request,
                ..
            } => Some((channel, ticket, request)),
            _ => None,
        })
        .expect("the replay's plan is asked of the log");
    written(&mut conn);

    // Meanwhile: live events of both channels, and a ping.
    let l = node.publish(live);
    let o = node.publish(old);
    while let Some(d) = node.queue.pop_front() {
        conn.on_delivery(&mut node, d);
    }
    conn.on_frame(&mut node, ClientFrame::Ping { request_id: None })
        .unwrap();
    let meanwhile = written(&mut conn);
    assert_eq!(seqs_of(&meanwhile, live), [l]);
    assert!(seqs_of(&meanwhile, old).is_empty(), "{meanwhile:?}");
    assert!(meanwhile.iter().any(|f| f["type"] == "pong"));

    // The plan comes back: `subscribed`, then the replay reads the log.
    let (channel, ticket, request) = plan;
    let planned = node.plan(&request);
    conn.on_answer(
        &mut node,
        Answer::Planned {
            channel,
            ticket,
            result: Ok(planned),
        },
    )
    .unwrap();
    let frames = written(&mut conn);
    assert_eq!(frames[0]["type"], "subscribed");
    assert_eq!(frames[0]["data"]["request_id"], "old");
    let read = effects(&mut conn).into_iter().find_map(|e| match e {
        Effect::Read { channel, after } => Some((channel, after)),
        _ => None,
    });
    assert_eq!(read, Some((old, 0)));
    for event in node.of_channel_after(old, 0).cloned().collect::<Vec<_>>() {
        let pending = node.of_channel_after(old, event.seq).count() as u64;
        let step = Step::Window(Arc::new(Recent::encode(event)), pending);
        conn.on_read_step(&mut node, old, Ok(step)).unwrap();
    }
    let frames = written(&mut conn);
    // Every event once: the one that came live meanwhile is not repeated.
    assert_eq!(seqs_of(&frames, old), [1, 2, 3, o]);
    assert!(frames.iter().any(|f| f["type"] == "replayed"));
}

#[test]
fn an_answer_for_a_subscription_that_is_gone_is_dropped() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let c = chat();
    node.publish(c);
    conn.on_frame(&mut node, subscribe(c, Some(0), "first"))
        .unwrap();
    let first = effects(&mut conn);
    conn.on_frame(
        &mut node,
        ClientFrame::Unsubscribe {
            channel: c,
            request_id: None,
        },
    )
    .unwrap();
    assert!(!node.joined.contains(&c), "left the hub");
    conn.on_frame(&mut node, subscribe(c, None, "again"))
        .unwrap();
    written(&mut conn);
    answer_plans(&mut conn, &mut node, first);
    assert!(
        written(&mut conn).is_empty(),
        "the old plan started nothing"
    );
    assert!(node.joined.contains(&c), "the new subscription stays");
}

#[test]
fn restores_go_on_in_the_background_and_keep_their_cursors_meanwhile() {
    let mut node = Model::new(false);
    let (kept, banned, foreign) = (chat(), chat(), Channel::User(Id::new_v4()));
    for c in [kept, banned, kept] {
        node.publish(c);
    }
    if let Channel::Chat(id) = banned {
        node.standings.insert(
            id,
            Standing {
                member: false,
                banned: true,
                channel_deleted: false,
            },
        );
    }
    let mut conn = state();
    let cursors = BTreeMap::from([(kept, 1), (banned, 0), (foreign, 0)]);
    node.session = cursors.clone();
    conn.open(&mut node, opened(cursors));
    let frames = written(&mut conn);
    assert_eq!(frames[0]["type"], "hello", "hello first, at once");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "error" && f["data"]["code"] == "forbidden"),
        "another user's channel is not restored: {frames:?}"
    );
    let plans: Vec<Effect> = effects(&mut conn)
        .into_iter()
        .filter(|e| matches!(e, Effect::Plan { .. }))
        .collect();
    assert_eq!(plans.len(), 2, "both chat channels are planned");
    // What the connection wrote removed the foreign channel and left the
    // others (still being planned).
    node.saves.clear();
    conn.on_frame(&mut node, subscribe(Channel::Global, None, "g"))
        .unwrap();
    assert!(!node.saves.is_empty(), "a subscribe is saved at once");
    assert_eq!(node.session.get(&kept), Some(&1));
    assert_eq!(node.session.get(&banned), Some(&0));
    assert_eq!(node.session.get(&foreign), None);
    assert_eq!(node.session.get(&Channel::Global), Some(&node.last_seq()));

    let mut driver = Driver::default();
    for effect in plans {
        if let Effect::Plan {
            channel,
            ticket,
            request,
            ..
        } = effect
        {
            driver
                .plans
                .push_back((channel, ticket, node.plan(&request)));
        }
    }
    settle(&mut conn, &mut node, &mut driver);
    let frames = written(&mut conn);
    assert_eq!(seqs_of(&frames, kept), [3]);
    // The banned one replays up to its end, then ends.
    assert_eq!(seqs_of(&frames, banned), [2]);
    assert!(frames.iter().any(|f| f["type"] == "unsubscribed"
        && f["data"]["channel"] == banned.to_string()
        && f["data"]["reason"] == "banned"));
}

#[test]
fn a_cursor_is_saved_once_the_client_confirmed_it() {
    let mut node = Model::new(true);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let c = chat();
    conn.on_frame(&mut node, subscribe(c, None, "s")).unwrap();
    written(&mut conn);
    let seq = node.publish(c);
    let delivery = node.queue.pop_front().expect("queued");
    conn.on_delivery(&mut node, delivery);
    let (_, touched) = conn.outbox().take_written();
    conn.on_flushed(touched);
    // Written, not confirmed: the session keeps the old cursor.
    let now = tokio::time::Instant::now() + Duration::from_secs(1);
    conn.on_timeout(&mut node, now).unwrap();
    assert_eq!(node.session.get(&c), Some(&0));
    // The probe (a ping after the frame) went out; its pong confirms.
    let (frames, _) = conn.outbox().take_written();
    let probe = frames
        .iter()
        .find(|(opcode, payload)| *opcode == 0x9 && payload.len() == 8)
        .expect("a receipt probe")
        .1
        .clone();
    conn.on_pong(&probe);
    conn.on_timeout(&mut node, now + Duration::from_secs(1))
        .unwrap();
    assert_eq!(node.session.get(&c), Some(&seq));
}

#[test]
fn a_recreated_stream_restarts_every_subscription_a_planning_one_too() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let (live, planning) = (chat(), chat());
    node.publish(planning);
    conn.on_frame(&mut node, subscribe(live, None, "live"))
        .unwrap();
    conn.on_frame(&mut node, subscribe(planning, Some(0), "planning"))
        .unwrap();
    let stale = effects(&mut conn);
    written(&mut conn);
    node.log.clear();
    node.epoch = Epoch::created_at(Utc::now() + chrono::Duration::seconds(1));
    conn.on_stream_recreated(&mut node);
    let frames = written(&mut conn);
    for (channel, request_id) in [(live, None), (planning, Some("planning"))] {
        let subscribed = frames
            .iter()
            .find(|f| f["type"] == "subscribed" && f["data"]["channel"] == channel.to_string())
            .expect("told subscribed again");
        assert_eq!(subscribed["data"]["complete"], false);
        assert_eq!(subscribed["data"]["epoch"], node.epoch.to_string());
        assert_eq!(subscribed["data"]["request_id"].as_str(), request_id);
    }
    // The old plan's answer changes nothing now.
    answer_plans(&mut conn, &mut node, stale);
    assert!(written(&mut conn).is_empty());
}

/// Answers every plan among `effects` as the log would plan it now.
fn answer_plans(conn: &mut State, node: &mut Model, effects: Vec<Effect>) {
    for effect in effects {
        if let Effect::Plan {
            channel,
            ticket,
            request,
            ..
        } = effect
        {
            let planned = node.plan(&request);
            let answer = Answer::Planned {
                channel,
                ticket,
                result: Ok(planned),
            };
            conn.on_answer(node, answer)
                .expect("a plan's answer never closes");
        }
    }
}

/// The `refresh` verifications the state asked for: (ticket, request id).
fn verifications(conn: &mut State) -> Vec<(u64, Option<String>)> {
    effects(conn)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Verify {
                ticket, request_id, ..
            } => Some((ticket, request_id)),
            _ => None,
        })
        .collect()
}

fn refresh(request_id: &str) -> ClientFrame {
    ClientFrame::Refresh {
        token: "a.b.c".into(),
        request_id: Some(request_id.into()),
    }
}

#[test]
fn a_refresh_takes_the_new_token_and_ends_what_its_grants_no_longer_allow() {
    let mut node = Model::new(true);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let user = conn.claims.sub;
    let (kept, dropped) = (chat(), chat());
    for channel in [kept, dropped] {
        let Channel::Chat(id) = channel else {
            unreachable!()
        };
        let granted_only = Standing {
            member: false,
            banned: false,
            channel_deleted: false,
        };
        node.standings.insert(id, granted_only);
    }
    conn.on_frame(&mut node, subscribe(kept, None, "k"))
        .unwrap();
    conn.on_frame(&mut node, subscribe(dropped, None, "d"))
        .unwrap();
    written(&mut conn);

    conn.on_frame(&mut node, refresh("r1")).unwrap();
    let asked = verifications(&mut conn);
    assert_eq!(asked.len(), 1, "the token goes to be verified");
    let Channel::Chat(kept_id) = kept else {
        unreachable!()
    };
    let narrower = dev_claims(
        user,
        Duration::from_secs(7200),
        Some("renamed".into()),
        Grant::Some(vec![kept_id]),
        Vec::new(),
    );
    let (ticket, request_id) = asked[0].clone();
    conn.on_answer(
        &mut node,
        Answer::Verified {
            ticket,
            request_id,
            result: Ok(narrower.clone()),
        },
    )
    .unwrap();
    let frames = written(&mut conn);
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types, ["unsubscribed", "refreshed"], "{frames:?}");
    assert_eq!(frames[0]["data"]["channel"], dropped.to_string());
    assert_eq!(frames[0]["data"]["reason"], "revoked");
    assert_eq!(frames[1]["data"]["exp"], narrower.exp);
    assert_eq!(frames[1]["data"]["request_id"], "r1");
    assert!(conn.holds(kept) && !conn.holds(dropped));
    assert!(!node.joined.contains(&dropped), "the hub was left");
    assert_eq!(conn.claims.username(), "renamed");

    // Live events of the revoked channel no longer reach the connection.
    node.publish(dropped);
    let k = node.publish(kept);
    while let Some(d) = node.queue.pop_front() {
        conn.on_delivery(&mut node, d);
    }
    let frames = written(&mut conn);
    assert_eq!(seqs_of(&frames, kept), [k]);
    assert!(seqs_of(&frames, dropped).is_empty());
}

#[test]
fn a_refused_refresh_changes_nothing() {
    let mut node = Model::new(true);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let channel = chat();
    conn.on_frame(&mut node, subscribe(channel, None, "s"))
        .unwrap();
    written(&mut conn);
    let before = (conn.claims.clone(), conn.deadlines.expiry);
    let other_user = dev_claims(
        Id::new_v4(),
        Duration::from_secs(7200),
        None,
        Grant::All,
        Vec::new(),
    );
    let refusals = [
        (Err(TokenError::Expired { seconds_ago: 3 }), "forbidden"),
        (Err(TokenError::Malformed("not a JWT")), "bad_request"),
        (Ok(other_user), "forbidden"),
    ];
    for (n, (result, code)) in refusals.into_iter().enumerate() {
        let id = format!("r{n}");
        conn.on_frame(&mut node, refresh(&id)).unwrap();
        let (ticket, request_id) = verifications(&mut conn).remove(0);
        conn.on_answer(
            &mut node,
            Answer::Verified {
                ticket,
                request_id,
                result,
            },
        )
        .unwrap();
        let frames = written(&mut conn);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["type"], "error");
        assert_eq!(frames[0]["data"]["code"], code);
        assert_eq!(frames[0]["data"]["request_id"], id.as_str());
        assert_eq!((conn.claims.clone(), conn.deadlines.expiry), before);
        assert!(conn.holds(channel));
    }
}

#[test]
fn a_refresh_overtaken_by_a_later_one_is_refused() {
    let mut node = Model::new(true);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    written(&mut conn);
    let user = conn.claims.sub;
    conn.on_frame(&mut node, refresh("first")).unwrap();
    conn.on_frame(&mut node, refresh("second")).unwrap();
    let asked = verifications(&mut conn);
    let token = |hours: u64| {
        dev_claims(
            user,
            Duration::from_secs(hours * 3600),
            None,
            Grant::All,
            vec![],
        )
    };
    let (later, earlier) = (token(3), token(2));
    for ((ticket, request_id), claims) in [
        (asked[1].clone(), later.clone()),
        (asked[0].clone(), earlier),
    ] {
        conn.on_answer(
            &mut node,
            Answer::Verified {
                ticket,
                request_id,
                result: Ok(claims),
            },
        )
        .unwrap();
    }
    let frames = written(&mut conn);
    assert_eq!(frames[0]["type"], "refreshed");
    assert_eq!(frames[0]["data"]["request_id"], "second");
    assert_eq!(frames[1]["type"], "error");
    assert_eq!(frames[1]["data"]["request_id"], "first");
    assert_eq!(conn.claims.exp, later.exp, "the later token stays");
}

#[test]
fn refreshes_past_the_limit_are_refused_unverified() {
    let mut node = Model::new(true);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    written(&mut conn);
    for n in 0..REFRESHES_PER_MINUTE {
        conn.on_frame(&mut node, refresh(&format!("r{n}"))).unwrap();
    }
    assert_eq!(verifications(&mut conn).len(), REFRESHES_PER_MINUTE);
    assert!(written(&mut conn).is_empty());
    conn.on_frame(&mut node, refresh("over")).unwrap();
    assert!(verifications(&mut conn).is_empty(), "not verified");
    let frames = written(&mut conn);
    assert_eq!(frames[0]["data"]["code"], "rate_limited");
    assert_eq!(frames[0]["data"]["request_id"], "over");
}

#[test]
fn what_a_burst_takes_is_given_back() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let channel = chat();
    conn.on_frame(&mut node, subscribe(channel, None, "s"))
        .unwrap();
    let Channel::Chat(id) = channel else {
        unreachable!()
    };
    conn.on_frame(
        &mut node,
        ClientFrame::Typing {
            channel: id,
            is_typing: true,
            request_id: None,
        },
    )
    .unwrap();
    conn.on_frame(
        &mut node,
        ClientFrame::Refresh {
            token: "a.b.c".into(),
            request_id: None,
        },
    )
    .unwrap();
    // The effects' queue keeps nothing once its effects are taken.
    assert!(!effects(&mut conn).is_empty());
    assert_eq!(conn.effects.capacity(), 0);
    // The typing and refresh limits stay while a hit is in their window,
    // and go once none is.
    let now = Instant::now();
    conn.release_idle_limits(now);
    assert!(conn.typing.is_some() && conn.refreshes.has_rate());
    conn.release_idle_limits(now + ABUSE_WINDOW);
    assert!(conn.typing.is_none() && !conn.refreshes.has_rate());
}
