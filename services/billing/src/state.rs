//! billing's state (pool, bag-registry client, caller resolver, settings), who is acting, and the
//! plumbing every mutation shares: replay a stored answer, remember the answer, write an event,
//! all in the mutation's transaction.

use std::sync::Arc;

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tonic::Request;
use tracetrack_common::caller::{Caller, CallerResolver};
use tracetrack_common::client::Intercepted;
use tracetrack_common::idempotency;
use tracetrack_common::mutation::Mutations;
use tracetrack_common::outbox::NewEvent;
use tracetrack_common::AppResult;
use tracetrack_proto::events::v1::Actor;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use uuid::Uuid;

use crate::config::Settings;

pub const SCHEMA: &str = "billing";
pub const SERVICE: &str = "billing";
/// What every mutation writes besides its own rows: idempotency answers and events.
pub(crate) const MUTATIONS: Mutations = Mutations {
    schema: SCHEMA,
    service: SERVICE,
};

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
        MUTATIONS
            .event(
                conn,
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
