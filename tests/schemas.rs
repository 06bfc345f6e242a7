#[test]
fn explore() {
    use switchboard::event::{EventData, EventType};
    use switchboard::gateway::protocol::decode;
    use switchboard::schema::Schemas;
    let c = "channel:0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d";
    for since in [
        "2025-01-15T10:30:00Z",
        "2025-01-15t10:30:00z",
        "2025-01-15 10:30:00Z",
        "2025-01-15T10:30:00+0100",
        "2025-01-15T10:30:00.Z",
        "2025-01-15T10:30:60Z",
        "2025-01-15T10:30:00-00:00",
        "2025-01-15T10:30:00,5Z",
        "+2025-01-15T10:30:00Z",
        "2025-1-15T10:30:00Z",
        "2025-01-15T10:30Z",
        "2025-01-15T10:30:00.1234567891234Z",
        "2025-01-15T24:00:00Z",
        "2025-01-15T10:30:00+24:00",
        "2025-01-15T10:30:00+99:00",
        "2025-01-15T10:30:00+01",
    ] {
        let text = serde_json::json!({"type":"subscribe","channel":c,"since":since});
        let d = decode(&text.to_string()).is_ok();
        let s = Schemas::get().check("client/subscribe", &text).is_ok();
        println!("{since:40} decode={d} schema={s}");
    }
    let text = serde_json::json!({"type":"ping","request_id":null});
    println!(
        "rid null decode={} schema={}",
        decode(&text.to_string()).is_ok(),
        Schemas::get().check("client/ping", &text).is_ok()
    );
    let v = serde_json::json!({"channel_id":"0b6f2c1e-3d4a-4f5b-8c9d-0e1f2a3b4c5d","user_id":null,"motive":"m"});
    println!(
        "user_id null decode={} schema={}",
        EventData::from_value(EventType::UserBanned, v.clone()).is_ok(),
        Schemas::get().check_data(EventType::UserBanned, &v).is_ok()
    );
}
