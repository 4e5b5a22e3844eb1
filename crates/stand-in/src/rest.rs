//! The stand-in's REST API: the routes Backstop uses, recorded, with failures on demand.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{channel_json, message_json, user_json, ChannelSpec, Recorded, Seen, Shared};

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix("/api/v10").unwrap_or(uri.path()).to_string();
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body: Value = match content_type.split_once("boundary=") {
        Some((kind, boundary)) if kind.starts_with("multipart/form-data") => {
            multipart(&body, boundary.trim_matches('"'))
        }
        _ => serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let (status, reply) = answer(&shared, &method, &path, &body);
    let recorded = Recorded {
        method: method.to_string(),
        path,
        body,
        status: status.as_u16(),
    };
    shared.lock().record(recorded.clone());
    shared.notify_watcher(Seen::Request(recorded));
    shared.changed.notify_waiters();
    match reply {
        Some(v) => (status, Json(v)).into_response(),
        None => status.into_response(),
    }
}

fn error(status: StatusCode, code: u64, message: &str) -> (StatusCode, Option<Value>) {
    (status, Some(json!({"code": code, "message": message})))
}

fn answer(shared: &Shared, method: &Method, path: &str, body: &Value) -> (StatusCode, Option<Value>) {
    let mut inner = shared.lock();
    if let Some(i) = inner.failures.iter().position(|f| path.contains(&f.path_contains)) {
        let f = inner.failures.remove(i).expect("index from position");
        let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return if f.status == 429 {
            (
                status,
                Some(json!({"message": "You are being rate limited.", "retry_after": f.retry_after, "global": false})),
            )
        } else {
            error(status, 0, "stand-in failure on demand")
        };
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = |i: usize| segments.get(i).and_then(|s| s.parse::<u64>().ok());
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["gateway"] | ["gateway", "bot"]) => (
            StatusCode::OK,
            Some(json!({
                "url": format!("ws://127.0.0.1:{}/gateway", shared.port),
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
            })),
        ),
        ("GET", ["users", "@me"]) => (
            StatusCode::OK,
            Some(user_json(inner.bot_id, &inner.bot_name.clone(), true)),
        ),
        ("GET", ["users", _]) => {
            let user = id(1).unwrap_or(0);
            match inner.guilds.iter().flat_map(|g| &g.members).find(|m| m.id == user) {
                Some(m) => (StatusCode::OK, Some(user_json(m.id, &m.name, m.bot))),
                None => error(StatusCode::NOT_FOUND, 10013, "Unknown User"),
            }
        }
        ("POST", ["users", "@me", "channels"]) => {
            let Some(user) = body["recipient_id"].as_str().and_then(|s| s.parse::<u64>().ok()) else {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            };
            let channel = match inner.dm_channels.get(&user) {
                Some(c) => *c,
                None => {
                    let c = inner.snowflake();
                    inner.dm_channels.insert(user, c);
                    inner.dm_recipient.insert(c, user);
                    c
                }
            };
            (
                StatusCode::OK,
                Some(
                    json!({"id": channel.to_string(), "type": 1, "last_message_id": null, "recipients": [user_json(user, &format!("user{user}"), false)]}),
                ),
            )
        }
        ("POST", ["channels", _, "messages"]) => {
            let channel = id(1).unwrap_or(0);
            if let Some(user) = inner.dm_recipient.get(&channel) {
                if inner.refuse_dms.contains(user) {
                    return error(StatusCode::FORBIDDEN, 50007, "Cannot send messages to this user");
                }
            }
            let message_id = inner.snowflake();
            let author = user_json(inner.bot_id, &inner.bot_name.clone(), true);
            let guild = inner
                .threads
                .get(&channel)
                .and_then(|t| t["guild_id"].as_str())
                .and_then(|g| g.parse().ok())
                .or_else(|| {
                    inner
                        .guilds
                        .iter()
                        .find(|g| g.channels.iter().any(|c| c.id == channel))
                        .map(|g| g.id)
                });
            let content = body["content"].as_str().unwrap_or("");
            let stamp = jiff::Timestamp::now().to_string();
            let message = message_json(message_id, channel, guild, author, None, content, &stamp, json!({}));
            // Discord echoes a bot's own guild messages back through the gateway.
            if guild.is_some() {
                inner.push_dispatch("MESSAGE_CREATE", message.clone());
            }
            (StatusCode::OK, Some(message))
        }
        ("POST", ["channels", _, "threads"]) => {
            let parent = id(1).unwrap_or(0);
            let Some(guild) = inner
                .guilds
                .iter()
                .find(|g| g.channels.iter().any(|c| c.id == parent))
                .map(|g| g.id)
            else {
                return error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
            };
            let thread = inner.snowflake();
            let spec = ChannelSpec {
                id: thread,
                kind: body["type"].as_u64().unwrap_or(12) as u8,
                name: body["name"].as_str().unwrap_or("thread").to_string(),
                parent_id: Some(parent),
            };
            let v = channel_json(&spec, guild);
            inner.threads.insert(thread, v.clone());
            inner.push_dispatch("THREAD_CREATE", v.clone());
            (StatusCode::CREATED, Some(v))
        }
        ("PUT", ["channels", _, "thread-members", _]) => (StatusCode::NO_CONTENT, None),
        ("GET", ["channels", _]) => {
            let channel = id(1).unwrap_or(0);
            if let Some(t) = inner.threads.get(&channel) {
                return (StatusCode::OK, Some(t.clone()));
            }
            match inner.guilds.iter().find_map(|g| {
                g.channels
                    .iter()
                    .find(|c| c.id == channel)
                    .map(|c| channel_json(c, g.id))
            }) {
                Some(v) => (StatusCode::OK, Some(v)),
                None => error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"),
            }
        }
        ("PUT", ["applications", _, "guilds", _, "commands"]) => {
            let app = id(1).unwrap_or(0);
            let guild = id(3).unwrap_or(0);
            let commands: Vec<Value> = body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c["id"] = json!(inner.snowflake().to_string());
                    c["application_id"] = json!(app.to_string());
                    c["guild_id"] = json!(guild.to_string());
                    c["version"] = json!("1");
                    if c.get("type").is_none() {
                        c["type"] = json!(1);
                    }
                    c["default_member_permissions"] =
                        c.get("default_member_permissions").cloned().unwrap_or(Value::Null);
                    c
                })
                .collect();
            (StatusCode::OK, Some(Value::Array(commands)))
        }
        ("POST", ["interactions", _, _, "callback"]) => (StatusCode::NO_CONTENT, None),
        ("PATCH", ["webhooks", _, _, "messages", "@original"]) => (StatusCode::OK, Some(json!({}))),
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found (stand-in has no such route)"),
    }
}

/// A message with files, as Discord takes it: a `payload_json` part and `files[n]` parts. The
/// payload becomes the recorded body; each file is listed under `_attachments` with its name,
/// size and (base64-free) first bytes, so tests can check what was attached.
fn multipart(body: &[u8], boundary: &str) -> Value {
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut payload = Value::Null;
    let mut files = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else { break };
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content_start = head_end + 4;
        let next = find(&rest[content_start..], delimiter.as_bytes()).map_or(rest.len(), |n| content_start + n);
        let mut content = &rest[content_start..next];
        if content.ends_with(b"\r\n") {
            content = &content[..content.len() - 2];
        }
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default();
        let field = |key: &str| {
            disposition.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{key}=\""))
                    .map(|v| v.trim_end_matches('"').to_string())
            })
        };
        match field("name").as_deref() {
            Some("payload_json") => payload = serde_json::from_slice(content).unwrap_or(Value::Null),
            Some(_) => files.push(json!({
                "filename": field("filename"),
                "size": content.len(),
                "png": content.starts_with(b"\x89PNG\r\n\x1a\n"),
            })),
            None => {}
        }
        rest = &rest[next..];
    }
    if payload.is_null() {
        payload = json!({});
    }
    payload["_attachments"] = Value::Array(files);
    payload
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
