//! Operating the bot: `/healthz` and Prometheus `/metrics` on a local address (off unless
//! configured). Figures are recorded with the `metrics` facade wherever they happen; the
//! Prometheus exporter renders them.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use crate::coach::figures::*;
use crate::coach::Coach;

pub const REMINDER_LAG: &str = "backstop_reminder_lag_seconds";
pub const GATEWAY_LATENCY: &str = "backstop_gateway_latency_seconds";
pub const WRITE_QUEUE: &str = "backstop_write_queue";
pub const WRITE_RETRIES: &str = "backstop_write_retries_total";

/// The process-wide recorder, installed on first use (a process has one metrics recorder).
fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(ENGINE_TIME.into()),
                    &[5e-6, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2e-2],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(REMINDER_LAG.into()),
                        &[0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0],
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::error!(error = %e, "cannot install the metrics recorder"))
                .ok()
        })
        .as_ref()
}

/// Serves `/healthz` and `/metrics` on `addr`; returns the address actually bound (port 0 picks
/// a free one).
pub async fn serve(
    addr: SocketAddr,
    coach: Arc<Coach>,
    stop: super::stop::Stop,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let _ = recorder();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render))
        .with_state(coach.clone());
    let task = tokio::spawn(async move {
        let upkeep = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if let Some(r) = recorder() {
                    r.run_upkeep();
                }
            }
        });
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.requested())
            .await
        {
            tracing::error!(error = %e, "the metrics server stopped");
        }
        upkeep.abort();
    });
    tracing::info!(%bound, "serving /healthz and /metrics");
    Ok((bound, task))
}

/// 200 once the gateway session is up; 503 before.
async fn healthz(State(coach): State<Arc<Coach>>) -> (StatusCode, String) {
    let queued = coach.writer.stats.queued.load(std::sync::atomic::Ordering::Relaxed);
    if coach.is_ready() {
        (StatusCode::OK, format!("ok\nwrite_queue {queued}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: not connected to Discord yet\n".into(),
        )
    }
}

async fn render(State(coach): State<Arc<Coach>>) -> String {
    let stats = &coach.writer.stats;
    metrics::gauge!(WRITE_QUEUE).set(stats.queued.load(std::sync::atomic::Ordering::Relaxed) as f64);
    metrics::counter!(WRITE_RETRIES).absolute(stats.retries.load(std::sync::atomic::Ordering::Relaxed));
    recorder().map(|r| r.render()).unwrap_or_default()
}
