//! billing's state (pool, bag-registry client, caller resolver, settings), who is acting, and the
//! plumbing every mutation shares: replay a stored answer, remember the answer, write an event,
//! all in the mutation's transaction.

use std::sync::Arc;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tonic::Request;
use tracetrack_common::caller::{Caller, CallerResolver};
use tracetrack_common::client::Intercepted;
use tracetrack_common::idempotency::{self, Begin};
use tracetrack_common::outbox::{self, NewEvent};
use tracetrack_common::AppResult;
use tracetrack_proto::events::v1::Actor;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use uuid::Uuid;

use crate::config::Settings;
use crate::store;

pub const SCHEMA: &str = "billing";
pub const SERVICE: &str = "billing";

pub type RegistryClient = BagRegistryServiceClient<Intercepted>;

pub(crate) type Tx = Transaction<'static, Postgres>;

pub struct Inner {
    pub pool: PgPool,
    /// Exports running at once in this replica.
    pub exports: tracetrack_common::export::Limiter,
    pub callers: CallerResolver,
    /// One shared channel to bag-registry (billing's service token on every call).
    pub registry: RegistryClient,
    pub settings: Settings,
}

#[derive(Clone)]
pub struct Billing(pub Arc<Inner>);

/// Who is acting: a request (its user, token and idempotency key) or the sweeper (billing
/// itself).
pub enum Who<'a> {
    Request(&'a Caller),
    Sweeper,
}

impl Who<'_> {
    pub fn actor(&self) -> Actor {
        match self {
            Who::Request(c) => c.actor(),
            Who::Sweeper => Actor {
                service: SERVICE.to_owned(),
                ..Actor::default()
            },
        }
    }

    pub(crate) fn token(&self) -> Option<&str> {
        match self {
            Who::Request(c) => c.user_token.as_deref(),
            Who::Sweeper => None,
        }
    }

    /// The key of a call to bag-registry: derived from the client's key (a retried request makes
    /// the same call), or from a fresh one when there is none.
    pub(crate) fn key(&self, purpose: &str) -> Option<String> {
        match self {
            Who::Request(c) => {
                let user_key = c
                    .idempotency_key
                    .clone()
                    .unwrap_or_else(|| Uuid::new_v4().to_string());
                Some(idempotency::derive_key(&user_key, &c.scope(), purpose))
            }
            Who::Sweeper => None,
        }
    }
}

impl Billing {
    pub fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    pub(crate) async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    pub fn registry(&self) -> RegistryClient {
        self.0.registry.clone()
    }

    /// The answer stored for the client's idempotency key, if there is one (a replay), or
    /// `idempotency_key_reused` when the key came with a different request. Claims nothing: the
    /// key is claimed in the transaction that makes the change. (The same probe as scan's.)
    pub(crate) async fn stored_answer<M: prost::Message + Default>(
        &self,
        caller: &Caller,
        rpc: &str,
        req: &impl prost::Message,
    ) -> AppResult<Option<M>> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            return Ok(None);
        };
        let scope = caller.scope();
        if !store::answer_stored(self.pool(), &scope, key).await? {
            return Ok(None);
        }
        let mut tx = self.pool().begin().await?;
        let found = idempotency::begin::<M>(&mut tx, SCHEMA, &scope, key, rpc, req).await?;
        tx.rollback().await?;
        Ok(match found {
            Begin::Replay(m) => Some(m),
            Begin::New => None,
        })
    }

    /// Claims the client's key in the caller's transaction; the first answer if it was used.
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

    /// Writes a `billing.*` event about a bill in the caller's transaction.
    pub(crate) async fn event(
        &self,
        conn: &mut PgConnection,
        who: &Who<'_>,
        event_type: &str,
        bill_id: &str,
        version: i64,
        payload: serde_json::Value,
    ) -> AppResult<()> {
        outbox::enqueue(
            conn,
            SCHEMA,
            SERVICE,
            NewEvent {
                event_type,
                aggregate_type: "bill",
                aggregate_id: bill_id,
                aggregate_version: version,
                actor: who.actor(),
                payload,
            },
        )
        .await?;
        metrics::counter!("billing_events_total", "type" => event_type.to_owned()).increment(1);
        Ok(())
    }
}
