//! bag-registry's state (pool, product lines, areas, caller resolver) and the plumbing every
//! mutation shares: replay a stored answer, remember the answer, write an event, all in the
//! mutation's transaction.
//!
//! The state lives here, not with the handlers, so the import (`rpc/import.rs`) and the
//! handlers both depend on it and not on each other (the old `grpc.rs` ↔ `import.rs` circle).

use std::sync::Arc;

use sqlx::{PgConnection, PgPool};
use tonic::Request;
use tracetrack_common::caller::{Caller, CallerResolver};
use tracetrack_common::mutation::Mutations;
use tracetrack_common::outbox::NewEvent;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr::ProductLine;

pub const SCHEMA: &str = "registry";
pub const SERVICE: &str = "bag-registry";
/// What every mutation writes besides its own rows: idempotency answers and events.
pub(crate) const MUTATIONS: Mutations = Mutations {
    schema: SCHEMA,
    service: SERVICE,
};

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    pub lines: Vec<ProductLine>,
    pub areas: Vec<String>,
    pub callers: CallerResolver,
    /// LinkChild's group commit.
    pub links: tracetrack_common::batch::Batcher<Inner>,
}

#[derive(Clone)]
pub struct Registry(pub Arc<Inner>);

impl Registry {
    pub(crate) fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    pub(crate) async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    pub(crate) fn lines(&self) -> &[ProductLine] {
        &self.0.lines
    }

    pub(crate) fn areas(&self) -> &[String] {
        &self.0.areas
    }

    pub(crate) fn known_area(&self, area: &str) -> AppResult<String> {
        let a = area.trim().to_lowercase();
        if self.0.areas.contains(&a) {
            Ok(a)
        } else {
            Err(AppError::invalid(format!("unknown area {a:?}")))
        }
    }

    /// A bag's event, to be written by `Mutations::commit_answer` (or [`Registry::event`]).
    pub(crate) fn new_event<'a>(
        &self,
        caller: &Caller,
        event_type: &'a str,
        aggregate_id: &'a str,
        payload: serde_json::Value,
    ) -> NewEvent<'a> {
        NewEvent {
            event_type,
            aggregate_type: "bag",
            aggregate_id,
            aggregate_version: 0,
            actor: caller.actor(),
            payload,
        }
    }

    /// Writes a `registry.*` event in the caller's transaction.
    pub(crate) async fn event(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        event_type: &str,
        aggregate_id: &str,
        payload: serde_json::Value,
    ) -> AppResult<()> {
        let event = self.new_event(caller, event_type, aggregate_id, payload);
        MUTATIONS.event(conn, event).await?;
        Ok(())
    }
}
