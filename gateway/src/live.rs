//! What the live streams (`/api/v1/scans/live`, `/api/v1/stats/live`) share: admission (at most
//! `sse_max_per_user` streams per user and `sse_max_total` per gateway, past which a new stream
//! is refused with 429 `overloaded`), and the periodic re-check of the viewer, which ends the
//! stream when the session ends or the viewer's role or area changes (the browser reconnects
//! and gets the view it now has).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use tokio_stream::wrappers::ReceiverStream;
use tracetrack_base::caller::{TokenVerifier, UserIdentity};
use tracetrack_base::AppError;
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Open streams, per user and in all.
#[derive(Default)]
pub struct Streams {
    open: Mutex<(HashMap<Uuid, usize>, usize)>,
}

/// A stream's place; gives it back when dropped.
pub struct Admitted {
    state: AppState,
    user: Uuid,
    stream: &'static str,
}

impl Streams {
    pub fn admit(
        &self,
        state: &AppState,
        user: Uuid,
        stream: &'static str,
    ) -> Result<Admitted, ApiError> {
        let settings = &state.0.settings;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (per_user, total) = &mut *open;
        let mine = per_user.entry(user).or_default();
        if *mine >= settings.sse_max_per_user.max(1) || *total >= settings.sse_max_total.max(1) {
            if *mine == 0 {
                per_user.remove(&user);
            }
            metrics::counter!("gateway_sse_refused_total", "stream" => stream).increment(1);
            return Err(ApiError(
                AppError::new(
                    ErrorCode::Overloaded,
                    "too many live views are open; close one and try again",
                )
                .with_detail("retry_after_seconds", 5),
            ));
        }
        *mine += 1;
        *total += 1;
        metrics::gauge!("gateway_sse_clients", "stream" => stream).increment(1.0);
        Ok(Admitted {
            state: state.clone(),
            user,
            stream,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .state
            .0
            .streams
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (per_user, total) = &mut *open;
        if let Some(n) = per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_user.remove(&self.user);
            }
        }
        *total = total.saturating_sub(1);
        metrics::gauge!("gateway_sse_clients", "stream" => self.stream).decrement(1.0);
    }
}

/// The part of a viewer that decides what a stream shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    role: tracetrack_domain::Role,
    area: Option<String>,
}

impl View {
    pub fn of(user: &UserIdentity) -> Self {
        Self {
            role: user.role,
            area: user.area.clone(),
        }
    }
}

/// Re-checks the viewer: `Some(event)` ends the stream with that last event (session ended, or
/// role or area changed); `None` keeps it. An auth that cannot be asked keeps the stream (the
/// next re-check decides).
pub async fn recheck(state: &AppState, token: &str, started: &View) -> Option<Event> {
    match state.0.verifier.verify_user(token).await {
        Ok(None) => Some(Event::default().event("end").data("session ended")),
        Ok(Some(user)) if View::of(&user) != *started => {
            Some(Event::default().event("end").data("view changed"))
        }
        _ => None,
    }
}

/// What a live stream's source came to.
pub enum Next {
    /// An event for the viewer; waits for room in the stream.
    Send(Event),
    /// An event a slow viewer may miss: dropped when the stream is full.
    Offer(Event),
    /// Nothing for this viewer.
    Skip,
    /// The source is gone: the stream ends.
    End,
}

/// Where one viewer's live stream takes its events from.
pub trait Source: Send + 'static {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Next> + Send + '_>>;
}

/// The live stream `name` for the viewer of `ctx`, holding at most `capacity` events: admitted
/// (or refused), with heartbeats, events from `source` until the viewer leaves, the source ends,
/// the gateway stops (the browser reconnects to another replica) or a re-check ends it.
pub fn sse(
    state: &AppState,
    ctx: &Ctx,
    name: &'static str,
    capacity: usize,
    mut source: impl Source,
) -> ApiResult<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>> {
    let admitted = state.0.streams.admit(state, ctx.user.id, name)?;
    let settings = &state.0.settings;
    let heartbeat = Duration::from_secs(settings.sse_heartbeat_secs.max(1));
    let every = Duration::from_secs(settings.sse_recheck_secs.max(1));
    let (state, token, started) = (state.clone(), ctx.token.clone(), View::of(&ctx.user));
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(capacity);
    tokio::spawn(async move {
        let _admitted = admitted;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut stopping = state.0.stopping.subscribe();
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                () = crate::state::stopped(&mut stopping) => break,
                _ = tick.tick() => {
                    if let Some(last) = recheck(&state, &token, &started).await {
                        let _ = tx.send(Ok(last)).await;
                        break;
                    }
                }
                next = source.next() => match next {
                    Next::Send(event) => {
                        if tx.send(Ok(event)).await.is_err() {
                            break;
                        }
                    }
                    Next::Offer(event) => {
                        if tx.try_send(Ok(event)).is_err() && tx.is_closed() {
                            break;
                        }
                    }
                    Next::Skip => {}
                    Next::End => break,
                },
            }
        }
    });
    let keep_alive = KeepAlive::new().interval(heartbeat).text("heartbeat");
    Ok(Sse::new(ReceiverStream::new(out)).keep_alive(keep_alive))
}
