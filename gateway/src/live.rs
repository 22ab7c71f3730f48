//! What the live streams (`/api/v1/scans/live`, `/api/v1/stats/live`) share: admission (at most
//! `sse_max_per_user` streams per user and `sse_max_total` per gateway, past which a new stream
//! is refused with 429 `overloaded`), and the periodic re-check of the viewer, which ends the
//! stream when the session ends or the viewer's role or area changes (the browser reconnects
//! and gets the view it now has).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::response::sse::Event;
use tracetrack_base::caller::{TokenVerifier, UserIdentity};
use tracetrack_base::AppError;
use tracetrack_domain::ErrorCode;
use uuid::Uuid;

use crate::error::ApiError;
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
