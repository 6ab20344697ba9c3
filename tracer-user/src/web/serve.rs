//! `attach --web`: the page and its data on a loopback port (unless told otherwise), for as
//! long as the session runs.

use std::{net::SocketAddr, time::Duration};

use axum::{
    extract::{Query, State},
    http::header,
    response::{Html, IntoResponse},
    routing::get,
    Router,
};

use super::{PageQuery, Shared};
use crate::error::{Error, Result};

/// `--web`'s default: loopback, a port the kernel picks.
pub const DEFAULT_ADDR: &str = "127.0.0.1:0";

/// Binds `addr` before anything is attached, so that a busy port fails at once.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::Other(format!(
            "--web {addr}: cannot listen there: {e} (give another address, e.g. --web 127.0.0.1:0)"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Other(format!("--web {addr}: {e}")))?;
    Ok(listener)
}

#[derive(Clone)]
struct App {
    view: Shared,
    tick: Duration,
}

/// The page at `/`, its data at `/api/page`.
pub fn router(view: Shared, tick: Duration) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/api/page", get(data))
        .with_state(App { view, tick })
}

/// The page: the same one the output directory's `index.html` holds, without data (it asks
/// `api/page`).
pub async fn page() -> Html<&'static str> {
    Html(crate::export::page::PAGE)
}

async fn data(State(app): State<App>, Query(query): Query<PageQuery>) -> impl IntoResponse {
    let mut view = app.view.lock();
    view.asked(&query);
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        view.page(&query, app.tick, &()),
    )
}

/// Serves until the process ends (the session's loop runs on the same runtime).
pub fn spawn(listener: std::net::TcpListener, router: Router) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::Other(format!("--web: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            log::warn!("--web: the server stopped: {e}");
        }
    });
    Ok(())
}
