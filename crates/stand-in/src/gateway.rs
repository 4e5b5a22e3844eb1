//! The stand-in's gateway: a WebSocket session per shard, replaying what the client missed.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use super::{guild_create_json, user_json, GuildSpec, Route, Seen, Shared, HEARTBEAT};

pub(crate) async fn upgrade(ws: WebSocketUpgrade, State(shared): State<Arc<Shared>>) -> Response {
    ws.on_upgrade(move |socket| session(socket, shared))
}

async fn send(socket: &mut WebSocket, frame: &Value) -> bool {
    socket.send(Message::Text(frame.to_string().into())).await.is_ok()
}

/// Plays one connection: Hello, then Identify or Resume, then dispatches until either side stops.
async fn session(mut socket: WebSocket, shared: Arc<Shared>) {
    shared.lock().connections += 1;
    let mut dropped = shared.drop_connection.subscribe();
    dropped.borrow_and_update();
    if !send(
        &mut socket,
        &json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT.as_millis() as u64}}),
    )
    .await
    {
        return;
    }
    // The last sequence this connection has delivered; nothing flows before Identify/Resume.
    let mut delivered: Option<u64> = None;
    // This connection's shard and the shard count, from Identify (or the resumed session).
    let mut shard = (0u32, 1u32);
    loop {
        // Register for wake-ups before reading the log, so a dispatch that lands between the read
        // and the wait is not missed (a `Notified` receives `notify_waiters` once created).
        let changed = shared.changed.notified();
        // Deliver whatever is new.
        if let Some(mut last) = delivered {
            let pending: Vec<(u64, Value)> = {
                let inner = shared.lock();
                // The log is in sequence order: start at the first entry this connection lacks.
                let from = inner.log.partition_point(|(s, _, _)| *s <= last);
                inner.log[from..]
                    .iter()
                    .filter(|(_, route, _)| route.reaches(shard.0, shard.1))
                    .map(|(s, _, frame)| (*s, frame.clone()))
                    .collect()
            };
            for (seq, frame) in pending {
                if !send(&mut socket, &frame).await {
                    return;
                }
                last = seq;
            }
            if delivered != Some(last) {
                shared.lock().delivered.insert(shard.0, last);
            }
            delivered = Some(last);
        }
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                let Message::Text(text) = message else { continue };
                let Ok(payload) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match payload["op"].as_u64() {
                    Some(1) if !send(&mut socket, &json!({"op": 11})).await => return,
                    Some(2) => {
                        let given = &payload["d"]["shard"];
                        shard = (
                            given[0].as_u64().unwrap_or(0) as u32,
                            given[1].as_u64().unwrap_or(1).max(1) as u32,
                        );
                        delivered = Some(identify(&shared, shard));
                    }
                    Some(6) => {
                        let seq = payload["d"]["seq"].as_u64().unwrap_or(0);
                        let session = payload["d"]["session_id"].as_str().unwrap_or_default();
                        let known = shared.lock().sessions.iter().find(|(_, s)| s.as_str() == session).map(|(n, _)| *n);
                        if let Some(n) = known {
                            shard.0 = n;
                            shard.1 = shared.lock().total_shards.max(1);
                            if !send(&mut socket, &json!({"op": 0, "t": "RESUMED", "s": seq, "d": {}})).await {
                                return;
                            }
                            delivered = Some(seq);
                        } else if !send(&mut socket, &json!({"op": 9, "d": false})).await {
                            return;
                        }
                    }
                    _ => {}
                }
            }
            _ = changed => {}
            _ = dropped.changed() => return,
        }
    }
}

/// Starts a new session for `(shard, total)`: READY and the shard's GUILD_CREATEs go into the
/// log. Returns the sequence before them, so the connection delivers from READY on.
fn identify(shared: &Shared, (shard, total): (u32, u32)) -> u64 {
    let mut inner = shared.lock();
    let start = inner.seq;
    let session_id = format!("stand-in-session-{}", inner.snowflake());
    inner.sessions.insert(shard, session_id.clone());
    inner.total_shards = total;
    let own: Vec<GuildSpec> = inner
        .guilds
        .iter()
        .filter(|g| Route::Guild(g.id).reaches(shard, total))
        .cloned()
        .collect();
    let ready = json!({
        "v": 10,
        "user": user_json(inner.bot_id, &inner.bot_name.clone(), true),
        "guilds": own.iter().map(|g| json!({"id": g.id.to_string(), "unavailable": true})).collect::<Vec<_>>(),
        "session_id": session_id,
        "resume_gateway_url": format!("ws://127.0.0.1:{}/gateway", shared.port),
        "application": {"id": inner.application_id.to_string(), "flags": 0},
        "private_channels": [],
        "shard": [shard, total],
    });
    inner.push_routed("READY", ready, Route::Shard(shard));
    for g in &own {
        inner.push_routed("GUILD_CREATE", guild_create_json(g), Route::Shard(shard));
    }
    inner.identified = true;
    drop(inner);
    shared.notify_watcher(Seen::Dispatched {
        kind: "READY".into(),
        data: Value::Null,
    });
    shared.changed.notify_waiters();
    start
}
