//! The transaction context of a mutation: what every state change of a service writes besides
//! its own rows — the answer stored under the caller's idempotency key (so a retried request
//! gets the first answer and changes nothing) and its events (the outbox, in the same
//! transaction). One implementation for every service; each holds a `Mutations` for its schema.
//!
//! A mutation runs: `replay` (claims the key; a stored answer ends it) → its own writes →
//! `event`s → `remember` → commit. A request that may only be a replay of an earlier one and
//! would otherwise do slow work first (calls to other services) asks `stored_answer`. A hot
//! mutation whose re-execution finds its own earlier change (LinkChild) skips the claim up front
//! and ends with `commit_answer`, which claims the key and stores the answer in one write.

use prost::Message;
use sqlx::{PgConnection, PgPool};
use tracetrack_domain::ErrorCode;

use crate::caller::Caller;
use crate::error::{AppError, AppResult};
use crate::idempotency::{self, Begin};
use crate::outbox::{self, NewEvent};

/// One answer of a batch, for [`Mutations::claim_answers`].
pub struct BatchAnswer<'a> {
    pub caller: &'a Caller,
    /// [`idempotency::request_hash`] of the request.
    pub request_hash: Vec<u8>,
    /// The encoded answer.
    pub response: Vec<u8>,
    pub event: Option<NewEvent<'a>>,
}

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
    /// mutation claims it later, in the transaction that makes the change. The check is
    /// [`Mutations::replay`] (the kit's one definition of "the same request") in a transaction
    /// that is always rolled back, after a cheap probe for the common case of no answer.
    pub async fn stored_answer<M: Message + Default>(
        &self,
        pool: &PgPool,
        caller: &Caller,
        rpc: &str,
        req: &impl Message,
    ) -> AppResult<Option<M>> {
        let stored = match caller.idempotency_key.as_deref() {
            Some(key) => idempotency::is_stored(pool, self.schema, &caller.scope(), key).await?,
            None => false,
        };
        if !stored {
            return Ok(None);
        }
        let mut tx = pool.begin().await?;
        let found = self.replay(&mut tx, caller, rpc, req).await?;
        tx.rollback().await?;
        Ok(found)
    }

    /// Commits `tx` with `resp` stored under the caller's idempotency key and `event` in the
    /// outbox, both written by ONE statement at the end that also claims the key (issue 18: the
    /// key is written once, with its answer, instead of claimed first and updated last). For a
    /// hot mutation that needs no claim up front: one whose re-execution is harmless, because it
    /// finds its own earlier change and answers the same way (LinkChild finds the child already
    /// in the parent).
    ///
    /// When an earlier request holds the key (the claim waits for it to commit), nothing of this
    /// one is kept: the transaction is rolled back and the earlier answer returned, with `false`
    /// (`idempotency_key_reused` for another request under the key). Without a key: writes the
    /// event and commits.
    pub async fn commit_answer<M: Message + Default>(
        &self,
        pool: &PgPool,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        caller: &Caller,
        (rpc, req): (&str, &impl Message),
        resp: M,
        event: Option<NewEvent<'_>>,
    ) -> AppResult<(M, bool)> {
        let Some(key) = caller.idempotency_key.as_deref() else {
            let wake = event.is_some();
            if let Some(e) = event {
                self.event(&mut tx, e).await?;
            }
            tx.commit().await?;
            if wake {
                outbox::wake(self.schema);
            }
            return Ok((resp, true));
        };
        let scope = caller.scope();
        let hash = idempotency::request_hash(rpc, req);
        let claim = idempotency::claim_sql(self.schema, ["$1", "$2", "$3", "$4"]);
        let row = event.map(|e| outbox::prepare(self.service, e));
        let sql = match &row {
            None => claim,
            Some(_) => format!(
                r#"WITH k AS ({claim}),
                   o AS (INSERT INTO "{schema}".outbox ({columns})
                         SELECT $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM k))
                   SELECT 1 FROM k"#,
                schema = self.schema,
                columns = outbox::OUTBOX_COLUMNS,
            ),
        };
        let mut q = sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(sql))
            .bind(&scope)
            .bind(key)
            .bind(&hash)
            .bind(resp.encode_to_vec());
        if let Some(r) = &row {
            q = q
                .bind(r.event_id)
                .bind(&r.event_type)
                .bind(&r.aggregate_id)
                .bind(&r.envelope)
                .bind(r.created_at);
        }
        if q.fetch_optional(&mut *tx).await?.is_some() {
            tx.commit().await?;
            if row.is_some() {
                outbox::wake(self.schema);
            }
            return Ok((resp, true));
        }
        tx.rollback().await?;
        let mut conn = pool.acquire().await?;
        let earlier = idempotency::stored(&mut conn, self.schema, &scope, key, &hash).await?;
        Ok((earlier, false))
    }

    /// A batch's [`Mutations::commit_answer`] without the commit (issue 18, group commit): ONE
    /// statement claims every answer's key with its answer and writes the events of the answers
    /// it claimed (and of those without a key). For each answer, whether it was claimed (always
    /// for one without a key); an unclaimed one's key is held by an earlier request, and the
    /// batch must not keep that answer's change. Keys must be distinct within the batch.
    pub async fn claim_answers(
        &self,
        conn: &mut PgConnection,
        answers: Vec<BatchAnswer<'_>>,
    ) -> AppResult<Vec<bool>> {
        let n = answers.len();
        let (mut idx, mut scopes, mut keys, mut hashes, mut responses) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut e_idx, mut e_ids, mut e_types, mut e_aggs, mut e_envs, mut e_ats) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (i, a) in answers.into_iter().enumerate() {
            let i = i as i32;
            idx.push(i);
            scopes.push(a.caller.scope());
            keys.push(a.caller.idempotency_key.clone());
            hashes.push(a.request_hash);
            responses.push(a.response);
            if let Some(e) = a.event {
                let row = outbox::prepare(self.service, e);
                e_idx.push(i);
                e_ids.push(row.event_id);
                e_types.push(row.event_type);
                e_aggs.push(row.aggregate_id);
                e_envs.push(row.envelope);
                e_ats.push(row.created_at);
            }
        }
        let claim = idempotency::claim_rows_sql(
            self.schema,
            "SELECT scope, key, hash, response FROM a WHERE key IS NOT NULL",
            "k.scope, k.key",
        );
        let sql = format!(
            r#"WITH a AS (SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::bytea[], $5::bytea[])
                          AS a(i, scope, key, hash, response)),
               k AS ({claim}),
               ok AS (SELECT a.i FROM a WHERE a.key IS NULL
                         OR EXISTS (SELECT 1 FROM k WHERE k.scope = a.scope AND k.key = a.key)),
               o AS (INSERT INTO "{schema}".outbox ({columns})
                     SELECT e.event_id, e.event_type, e.aggregate_id, e.envelope, e.created_at
                       FROM unnest($6::int[], $7::uuid[], $8::text[], $9::text[], $10::bytea[], $11::timestamptz[])
                            AS e(i, event_id, event_type, aggregate_id, envelope, created_at)
                      WHERE e.i IN (SELECT i FROM ok) ORDER BY e.i)
               SELECT i FROM ok"#,
            schema = self.schema,
            columns = outbox::OUTBOX_COLUMNS,
        );
        let claimed: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&idx)
            .bind(&scopes)
            .bind(&keys)
            .bind(&hashes)
            .bind(&responses)
            .bind(&e_idx)
            .bind(&e_ids)
            .bind(&e_types)
            .bind(&e_aggs)
            .bind(&e_envs)
            .bind(&e_ats)
            .fetch_all(&mut *conn)
            .await?;
        let mut out = vec![false; n];
        for i in claimed {
            out[i as usize] = true;
        }
        Ok(out)
    }

    /// For a mutation that commits with [`Mutations::commit_answer`] and failed: the answer an
    /// earlier request under the same key got, if there is one (a replay that could not be
    /// re-executed — say its child has moved on since — still gets its first answer), else `err`.
    pub async fn earlier_answer_or<M: Message + Default>(
        &self,
        pool: &PgPool,
        caller: &Caller,
        rpc: &str,
        req: &impl Message,
        err: AppError,
    ) -> AppResult<M> {
        match self.stored_answer(pool, caller, rpc, req).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(err),
            Err(e) if e.code == ErrorCode::IdempotencyKeyReused => Err(e),
            Err(_) => Err(err),
        }
    }

    /// Writes an event in `conn`'s transaction (published by the relay after commit).
    pub async fn event(&self, conn: &mut PgConnection, event: NewEvent<'_>) -> AppResult<()> {
        outbox::enqueue(conn, self.schema, self.service, event)
            .await
            .map(|_| ())
    }
}
