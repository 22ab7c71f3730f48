//! The transaction context of a mutation: what every state change of a service writes besides
//! its own rows — the answer stored under the caller's idempotency key (so a retried request
//! gets the first answer and changes nothing) and its events (the outbox, in the same
//! transaction). One implementation for every service; each holds a `Mutations` for its schema.
//!
//! A mutation runs: `replay` (claims the key; a stored answer ends it) → its own writes →
//! `event`s → `remember` → commit. A request that may only be a replay of an earlier one and
//! would otherwise do slow work first (calls to other services) asks `stored_answer`.

use prost::Message;
use sqlx::{PgConnection, PgPool};

use crate::caller::Caller;
use crate::error::AppResult;
use crate::idempotency::{self, Begin};
use crate::outbox::{self, NewEvent};

#[derive(Debug, Clone, Copy)]
pub struct Mutations {
    /// The service's schema (its idempotency keys and outbox live there).
    pub schema: &'static str,
    /// The service's name, as its events carry it.
    pub service: &'static str,
}

impl Mutations {
    /// Claims the caller's idempotency key (if it sent one) in `conn`'s transaction; the
    /// first answer when the key was used before with the same request
    /// (`idempotency_key_reused` with another).
    pub async fn replay<M: Message + Default>(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        rpc: &str,
        req: &impl Message,
    ) -> AppResult<Option<M>> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            return Ok(None);
        };
        match idempotency::begin::<M>(conn, self.schema, &caller.scope(), key, rpc, req).await? {
            Begin::New => Ok(None),
            Begin::Replay(m) => Ok(Some(m)),
        }
    }

    /// Stores the answer under the key [`Mutations::replay`] claimed.
    pub async fn remember(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        resp: &impl Message,
    ) -> AppResult<()> {
        if let Some(key) = caller.idempotency_key.as_deref() {
            idempotency::finish(conn, self.schema, &caller.scope(), key, resp).await?;
        }
        Ok(())
    }

    /// The answer stored for the caller's key, if there is one, without claiming it: the
    /// mutation claims it later, in the transaction that makes the change. The check runs
    /// [`idempotency::begin`] (the kit's one definition of "the same request") in a transaction
    /// that is always rolled back, after a cheap probe for the common case of no answer.
    pub async fn stored_answer<M: Message + Default>(
        &self,
        pool: &PgPool,
        caller: &Caller,
        rpc: &str,
        req: &impl Message,
    ) -> AppResult<Option<M>> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            return Ok(None);
        };
        let scope = caller.scope();
        if !idempotency::is_stored(pool, self.schema, &scope, key).await? {
            return Ok(None);
        }
        let mut tx = pool.begin().await?;
        let found = idempotency::begin::<M>(&mut tx, self.schema, &scope, key, rpc, req).await?;
        tx.rollback().await?;
        Ok(match found {
            Begin::Replay(m) => Some(m),
            Begin::New => None,
        })
    }

    /// Writes an event in `conn`'s transaction (published by the relay after commit).
    pub async fn event(&self, conn: &mut PgConnection, event: NewEvent<'_>) -> AppResult<()> {
        outbox::enqueue(conn, self.schema, self.service, event)
            .await
            .map(|_| ())
    }
}
