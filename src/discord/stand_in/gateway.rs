//! The stand-in's gateway: one WebSocket session at a time, replaying what the client missed.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use super::{guild_create_json, user_json, Seen, Shared, HEARTBEAT};

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
    loop {
        // Register for wake-ups before reading the log, so a dispatch that lands between the read
        // and the wait is not missed (a `Notified` receives `notify_waiters` once created).
        let changed = shared.changed.notified();
        // Deliver whatever is new.
        if let Some(mut last) = delivered {
            let pending: Vec<(u64, Value)> = shared.lock().log.iter().filter(|(s, _)| *s > last).cloned().collect();
            for (seq, frame) in pending {
                if !send(&mut socket, &frame).await {
                    return;
                }
                last = seq;
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
                    Some(2) => delivered = Some(identify(&shared)),
                    Some(6) => {
                        let seq = payload["d"]["seq"].as_u64().unwrap_or(0);
                        let known = payload["d"]["session_id"].as_str() == Some(shared.lock().session_id.as_str());
                        if known {
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

/// Starts a new session: READY and GUILD_CREATE go into the log. Returns the sequence before
/// them, so the connection delivers from READY on.
fn identify(shared: &Shared) -> u64 {
    let mut inner = shared.lock();
    let start = inner.seq;
    inner.session_id = format!("stand-in-session-{}", inner.snowflake());
    let ready = json!({
        "v": 10,
        "user": user_json(inner.bot_id, &inner.bot_name.clone(), true),
        "guilds": inner.guilds.iter().map(|g| json!({"id": g.id.to_string(), "unavailable": true})).collect::<Vec<_>>(),
        "session_id": inner.session_id,
        "resume_gateway_url": format!("ws://127.0.0.1:{}/gateway", shared.port),
        "application": {"id": inner.application_id.to_string(), "flags": 0},
        "private_channels": [],
    });
    inner.push_dispatch("READY", ready);
    let guilds: Vec<Value> = inner.guilds.iter().map(guild_create_json).collect();
    for g in guilds {
        inner.push_dispatch("GUILD_CREATE", g);
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
