//! Stopping background tasks at their idle points.
//!
//! Aborting a task drops it at whatever `.await` it is parked on, which can be between sending a
//! reminder and recording it. A [`Stop`] is only consulted where a task waits for time or work, so
//! a stop lets the step in hand finish its write and the task return on its own.

use std::future::Future;

use tokio::sync::watch;

/// Held by [`super::Running`]; [`StopSignal::stop`] asks every task to return.
pub struct StopSignal(watch::Sender<bool>);

/// Given to each background task.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

pub fn channel() -> (StopSignal, Stop) {
    let (tx, rx) = watch::channel(false);
    (StopSignal(tx), Stop(rx))
}

impl StopSignal {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Stop {
    /// Waits on `idle` unless a stop comes first. `false` means stop: the task should return.
    pub async fn wait<F: Future>(&mut self, idle: F) -> bool {
        if *self.0.borrow() {
            return false;
        }
        tokio::select! {
            _ = idle => true,
            _ = self.0.wait_for(|stop| *stop) => false,
        }
    }

    /// Resolves when a stop is asked for (or the signal is gone).
    pub async fn requested(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_idle_wait_ends_early_on_stop_and_finishes_otherwise() {
        let (signal, mut stop) = channel();
        assert!(stop.wait(tokio::time::sleep(Duration::from_millis(1))).await);
        let waiting = tokio::spawn({
            let mut stop = stop.clone();
            async move { stop.wait(tokio::time::sleep(Duration::from_secs(3600))).await }
        });
        signal.stop();
        let waited = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(!waited.expect("a stop ends the wait").expect("task ran"));
        assert!(!stop.wait(std::future::ready(())).await, "stopped stays stopped");
    }
}
