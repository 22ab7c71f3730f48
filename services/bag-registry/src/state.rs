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
use tracetrack_common::idempotency::{self, Begin};
use tracetrack_common::outbox::{self, NewEvent};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr::ProductLine;

pub const SCHEMA: &str = "registry";
pub const SERVICE: &str = "bag-registry";

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    pub lines: Vec<ProductLine>,
    pub areas: Vec<String>,
    pub callers: CallerResolver,
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

    pub(crate) async fn replay<M: prost::Message + Default>(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
    ) -> AppResult<Option<M>> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            return Ok(None);
        };
        match idempotency::begin::<M>(conn, SCHEMA, &caller.scope(), key, rpc, req).await? {
            Begin::New => Ok(None),
            Begin::Replay(m) => Ok(Some(m)),
        }
    }

    pub(crate) async fn remember(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        resp: &impl prost::Message,
    ) -> AppResult<()> {
        if let Some(key) = caller.idempotency_key.as_deref() {
            idempotency::finish(conn, SCHEMA, &caller.scope(), key, resp).await?;
        }
        Ok(())
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
        outbox::enqueue(
            conn,
            SCHEMA,
            SERVICE,
            NewEvent {
                event_type,
                aggregate_type: "bag",
                aggregate_id,
                aggregate_version: 0,
                actor: caller.actor(),
                payload,
            },
        )
        .await?;
        Ok(())
    }
}
