//! Running the server: listener, keep-alive reaper, and graceful shutdown on SIGTERM/Ctrl-C
//! (stop accepting, tell running generations to stop, wait at most `grace` for open streams).

use std::future::IntoFuture;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::app;
use crate::state::AppState;

pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

pub async fn run(listener: TcpListener, state: AppState, grace: Duration) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    run_until(listener, state, grace, stop_rx).await
}

/// Like [`run`], stopping when `stop` turns true (tests drive it directly).
pub async fn run_until(
    listener: TcpListener,
    state: AppState,
    grace: Duration,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let reaper_state = state.clone();
    let reaper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            reaper_state.models.reap();
        }
    });
    let flag_state = state.clone();
    let mut stop_graceful = stop.clone();
    let graceful = async move {
        let _ = stop_graceful.wait_for(|s| *s).await;
        tracing::info!("shutting down: no new connections; ending running generations");
        flag_state.shutdown.store(true, Ordering::Relaxed);
    };
    let mut stop_bound = stop;
    let bound = async move {
        let _ = stop_bound.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(graceful);
    let result = tokio::select! {
        r = server.into_future() => r,
        _ = bound => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "grace period over; closing remaining connections");
            Ok(())
        }
    };
    reaper.abort();
    state.models.unload_all();
    result
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
