//! bag-registry's gRPC handlers.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tonic::{Request, Response, Status, Streaming};
use tracetrack_common::caller::{Caller, CallerResolver};
use tracetrack_common::export::{self, ExportStream};
use tracetrack_common::idempotency::{self, Begin};
use tracetrack_common::outbox::{self, NewEvent};
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::qr::{self, ProductLine, QrError};
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::registry::v1 as pb;

use crate::store::{self, BagRow, BAG_COLUMNS, SCHEMA, SERVICE};

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

const MANAGERS: &[Role] = &[Role::Admin, Role::Biller];

fn qr_err(e: QrError) -> AppError {
    AppError::new(e.code, e.message)
}

fn page_size(n: u32) -> i64 {
    match n {
        0 => 50,
        n => i64::from(n.min(200)),
    }
}

fn encode_token(parts: &[String]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(parts.join("\u{1f}"))
}

fn decode_token(token: &str) -> AppResult<Vec<String>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.split('\u{1f}').map(str::to_owned).collect())
        .ok_or_else(|| AppError::invalid("bad page_token"))
}

fn from_ts(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref()
        .and_then(|t| Utc.timestamp_opt(t.seconds, t.nanos.max(0) as u32).single())
}

impl Registry {
    fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    async fn caller<T>(&self, req: &Request<T>) -> AppResult<Caller> {
        self.0.callers.resolve(req.metadata()).await
    }

    fn known_area(&self, area: &str) -> AppResult<String> {
        let a = area.trim().to_lowercase();
        if self.0.areas.contains(&a) {
            Ok(a)
        } else {
            Err(AppError::invalid(format!("unknown area {a:?}")))
        }
    }

    async fn replay<M: prost::Message + Default>(
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

    async fn remember(
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

    async fn event(
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

    /// Inserts a parent with its line's capacity and weights snapshotted; None if it exists.
    async fn insert_parent(
        &self,
        conn: &mut PgConnection,
        qr: &str,
        line: &str,
        area: &str,
        caller: &Caller,
    ) -> AppResult<Option<BagRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"WITH b AS (
                 INSERT INTO registry.bags (qr, kind, product_line, area, capacity, parent_weight_kg, child_weight_kg, created_by)
                 SELECT $1, 'parent', l.name, $3, l.capacity, l.parent_weight_kg, l.child_weight_kg, $4
                 FROM registry.product_lines l WHERE l.name = $2
                 ON CONFLICT (qr) DO NOTHING
                 RETURNING *)
               SELECT {BAG_COLUMNS} FROM b"#
        )))
        .bind(qr)
        .bind(line)
        .bind(area)
        .bind(caller.user.as_ref().map(|u| u.id))
        .fetch_optional(&mut *conn)
        .await?)
    }

    // ------------------------------------------------------------------ end-user RPCs

    async fn register_bag(
        &self,
        req: Request<pb::RegisterBagRequest>,
    ) -> AppResult<pb::RegisterBagResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let area = if req.area.trim().is_empty() {
            return Err(AppError::new(
                ErrorCode::AreaRequired,
                "name the bag's area",
            ));
        } else {
            self.known_area(&req.area)?
        };
        let mut tx = self.pool().begin().await?;
        if let Some(r) = self.replay(&mut tx, &caller, "RegisterBag", &req).await? {
            return Ok(r);
        }
        let row = match pb::BagType::try_from(req.r#type) {
            Ok(pb::BagType::Parent) => {
                let (id, line) = qr::parent_id(&req.qr, &self.0.lines).map_err(qr_err)?;
                self.insert_parent(&mut tx, &id, &line.name, &area, &caller)
                    .await?
            }
            Ok(pb::BagType::Child) => {
                let id = qr::child_id(&req.qr, &self.0.lines).map_err(qr_err)?;
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    r#"WITH b AS (INSERT INTO registry.bags (qr, kind, area, created_by) VALUES ($1, 'child', $2, $3)
                                  ON CONFLICT (qr) DO NOTHING RETURNING *)
                       SELECT {BAG_COLUMNS} FROM b"#
                )))
                .bind(&id)
                .bind(&area)
                .bind(user.id)
                .fetch_optional(&mut *tx)
                .await?
            }
            _ => return Err(AppError::invalid("type must be parent or child")),
        };
        let row = row
            .ok_or_else(|| AppError::new(ErrorCode::BagExists, "that bag is already registered"))?;
        self.event(&mut tx, &caller, "registry.bag_registered", &row.qr, json!({"bag": row.to_pb().qr, "kind": row.kind, "area": row.area, "product_line": row.product_line}))
            .await?;
        let resp = pb::RegisterBagResponse {
            bag: Some(row.to_pb()),
        };
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    async fn get_bag(&self, req: Request<pb::GetBagRequest>) -> AppResult<pb::GetBagResponse> {
        self.caller(&req).await?.user()?;
        let id = qr::normalize(&req.get_ref().qr).map_err(qr_err)?;
        let mut conn = self.pool().acquire().await?;
        let bag = store::bag(&mut conn, &id)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no bag with that code"))?;
        Ok(pb::GetBagResponse {
            bag: Some(bag.to_pb()),
        })
    }

    async fn get_bags(&self, req: Request<pb::GetBagsRequest>) -> AppResult<pb::GetBagsResponse> {
        let caller = self.caller(&req).await?;
        if caller.user.is_none() && caller.service.is_none() {
            return Err(AppError::unauthenticated());
        }
        // A user sees the bags of the areas they may see (one bag by id is open to every
        // role — GetBag — but a batch is a list); a service (billing) sees all.
        let view = match &caller.user {
            Some(_) => tracetrack_common::caller::AreaView::of(caller.user()?),
            None => tracetrack_common::caller::AreaView::All,
        };
        let qrs: Vec<String> = req
            .get_ref()
            .qrs
            .iter()
            .filter_map(|q| qr::normalize(q).ok())
            .collect();
        if qrs.len() > 500 {
            return Err(AppError::invalid("at most 500 bags at once"));
        }
        let mut conn = self.pool().acquire().await?;
        let rows = store::bags(&mut conn, &qrs).await?;
        Ok(pb::GetBagsResponse {
            bags: rows
                .iter()
                .filter(|b| view.sees(&b.area))
                .map(BagRow::to_pb)
                .collect(),
        })
    }

    /// SearchBags' filters (shared with ExportBags): a dispatcher's area is their own.
    fn bag_filter(
        &self,
        user: &tracetrack_common::caller::UserIdentity,
        req: &pb::SearchBagsRequest,
    ) -> AppResult<store::BagFilter> {
        Ok(store::BagFilter {
            // An area-scoped user without an area sees nothing (no bag has the empty area).
            area: if user.role.is_area_scoped() {
                Some(user.area.clone().unwrap_or_default())
            } else if req.area.trim().is_empty() {
                None
            } else {
                Some(self.known_area(&req.area)?)
            },
            kind: match pb::BagType::try_from(req.r#type) {
                Ok(pb::BagType::Parent) => Some("parent"),
                Ok(pb::BagType::Child) => Some("child"),
                _ => None,
            },
            prefix: if req.qr_prefix.trim().is_empty() {
                None
            } else {
                Some(qr::normalize(&req.qr_prefix).map_err(qr_err)?)
            },
            linked: req.linked,
            billed: req.billed,
            from: from_ts(&req.created_from),
            to: from_ts(&req.created_to),
        })
    }

    async fn search_bags(
        &self,
        req: Request<pb::SearchBagsRequest>,
    ) -> AppResult<pb::SearchBagsResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let filter = self.bag_filter(&user, &req)?;
        let (kind, area) = (filter.kind, filter.area.clone());
        let size = page_size(req.page_size);
        let rows: Vec<BagRow> = if filter.prefix.is_some() {
            // Prefix search walks the primary key ("C" collation) in QR order.
            let after = if req.page_token.is_empty() {
                None
            } else {
                decode_token(&req.page_token)?.into_iter().next()
            };
            let mut conn = self.pool().acquire().await?;
            store::bags_by_qr(&mut conn, &filter, after.as_deref(), size + 1).await?
        } else {
            // Newest first, keyset on (created_at, qr).
            let after = if req.page_token.is_empty() {
                None
            } else {
                let parts = decode_token(&req.page_token)?;
                let micros: i64 = parts
                    .first()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| AppError::invalid("bad page_token"))?;
                let at = Utc
                    .timestamp_micros(micros)
                    .single()
                    .ok_or_else(|| AppError::invalid("bad page_token"))?;
                Some((at, parts.get(1).cloned().unwrap_or_default()))
            };
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                r#"SELECT {BAG_COLUMNS} FROM registry.bags b
                   WHERE ($1::timestamptz IS NULL OR (b.created_at, b.qr) < ($1, $2))
                     AND ($3::text IS NULL OR b.kind = $3) AND ($4::text IS NULL OR b.area = $4)
                     AND ($5::bool IS NULL OR (CASE WHEN b.kind = 'child' THEN b.parent_qr IS NOT NULL ELSE b.child_count > 0 END) = $5)
                     AND ($6::bool IS NULL OR (b.bill_id IS NOT NULL) = $6)
                     AND ($7::timestamptz IS NULL OR b.created_at >= $7) AND ($8::timestamptz IS NULL OR b.created_at < $8)
                   ORDER BY b.created_at DESC, b.qr DESC LIMIT $9"#
            )))
            .bind(after.as_ref().map(|a| a.0))
            .bind(after.as_ref().map(|a| a.1.clone()))
            .bind(kind)
            .bind(&area)
            .bind(req.linked)
            .bind(req.billed)
            .bind(from_ts(&req.created_from))
            .bind(from_ts(&req.created_to))
            .bind(size + 1)
            .fetch_all(self.pool())
            .await?
        };
        let more = rows.len() as i64 > size;
        let rows = &rows[..rows.len().min(size as usize)];
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) if req.qr_prefix.trim().is_empty() => encode_token(&[
                last.created_at.timestamp_micros().to_string(),
                last.qr.clone(),
            ]),
            (true, Some(last)) => encode_token(std::slice::from_ref(&last.qr)),
            _ => String::new(),
        };
        Ok(pb::SearchBagsResponse {
            bags: rows.iter().map(BagRow::to_pb).collect(),
            next_page_token,
        })
    }

    async fn list_children(
        &self,
        req: Request<pb::ListChildrenRequest>,
    ) -> AppResult<pb::ListChildrenResponse> {
        let caller = self.caller(&req).await?;
        caller.user()?;
        let req = req.into_inner();
        let id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut conn = self.pool().acquire().await?;
        let parent = store::parent(&mut conn, &id).await?;
        caller.check_area(&parent.area)?;
        let size = page_size(req.page_size);
        let after = if req.page_token.is_empty() {
            None
        } else {
            decode_token(&req.page_token)?.into_iter().next()
        };
        let rows: Vec<BagRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"SELECT {BAG_COLUMNS} FROM registry.bags b
               WHERE b.parent_qr = $1 AND ($2::text IS NULL OR b.qr > $2) ORDER BY b.qr LIMIT $3"#
        )))
        .bind(&id)
        .bind(after)
        .bind(size + 1)
        .fetch_all(&mut *conn)
        .await?;
        let more = rows.len() as i64 > size;
        let rows = &rows[..rows.len().min(size as usize)];
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => encode_token(std::slice::from_ref(&last.qr)),
            _ => String::new(),
        };
        Ok(pb::ListChildrenResponse {
            children: rows.iter().map(BagRow::to_pb).collect(),
            next_page_token,
            parent: Some(parent.to_pb()),
        })
    }

    async fn unlink_child(
        &self,
        req: Request<pb::UnlinkChildRequest>,
    ) -> AppResult<pb::UnlinkChildResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let parent_id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let child_id = qr::normalize(&req.child_qr).map_err(qr_err)?;
        tracetrack_common::db::retry(|| async {
            let mut tx = self.pool().begin().await?;
            if let Some(r) = self.replay(&mut tx, &caller, "UnlinkChild", &req).await? {
                return Ok(r);
            }
            let child: Option<BagRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                r#"WITH b AS (UPDATE registry.bags SET parent_qr = NULL, linked_by = NULL, linked_at = NULL
                              WHERE qr = $1 AND parent_qr = $2 RETURNING *)
                   SELECT {BAG_COLUMNS} FROM b"#
            )))
            .bind(&child_id)
            .bind(&parent_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| store::link_error(e, &parent_id))?;
            let Some(child) = child else {
                return Err(AppError::new(ErrorCode::BagNotFound, "that child is not in this parent")
                    .with_detail("child_qr", &child_id));
            };
            let parent = store::parent(&mut tx, &parent_id).await?;
            self.event(&mut tx, &caller, "registry.child_unlinked", &child_id, json!({"parent_qr": parent_id, "child_qr": child_id, "area": child.area, "parent_child_count": parent.child_count}))
                .await?;
            let resp = pb::UnlinkChildResponse { parent: Some(parent.to_pb()), child: Some(child.to_pb()) };
            self.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            Ok(resp)
        })
        .await
    }

    async fn move_child(
        &self,
        req: Request<pb::MoveChildRequest>,
    ) -> AppResult<pb::MoveChildResponse> {
        let caller = self.caller(&req).await?;
        let user = caller.require_role(MANAGERS)?.clone();
        let req = req.into_inner();
        let (parent_id, _) = qr::parent_id(&req.parent_qr, &self.0.lines).map_err(qr_err)?;
        let child_id = qr::child_id(&req.child_qr, &self.0.lines).map_err(qr_err)?;
        tracetrack_common::db::retry(|| async {
            let mut tx = self.pool().begin().await?;
            if let Some(r) = self.replay(&mut tx, &caller, "MoveChild", &req).await? {
                return Ok(r);
            }
            store::parent(&mut tx, &parent_id).await?;
            let before = store::bag(&mut tx, &child_id)
                .await?
                .filter(|b| !b.is_parent())
                .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no child with that code"))?;
            if before.parent_qr.as_deref() == Some(parent_id.as_str()) {
                let parent = store::parent(&mut tx, &parent_id).await?;
                return Ok(pb::MoveChildResponse { parent: Some(parent.to_pb()), child: Some(before.to_pb()), previous_parent: None });
            }
            // The child row is locked first by this statement, then (in the trigger) both
            // parents in QR order.
            let child: BagRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                r#"WITH b AS (UPDATE registry.bags c SET parent_qr = p.qr, linked_by = $3, linked_at = now(),
                                     area = p.area, product_line = p.product_line, child_weight_kg = p.child_weight_kg
                              FROM registry.bags p WHERE c.qr = $1 AND c.kind = 'child' AND p.qr = $2
                              RETURNING c.*)
                   SELECT {BAG_COLUMNS} FROM b"#
            )))
            .bind(&child_id)
            .bind(&parent_id)
            .bind(user.id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| store::link_error(e, &parent_id))?;
            let parent = store::parent(&mut tx, &parent_id).await?;
            let previous = match &before.parent_qr {
                Some(p) => Some(store::parent(&mut tx, p).await?.to_pb()),
                None => None,
            };
            self.event(&mut tx, &caller, "registry.child_moved", &child_id, json!({"child_qr": child_id, "from_parent_qr": before.parent_qr, "to_parent_qr": parent_id, "from_area": before.area, "area": child.area, "parent_child_count": parent.child_count}))
                .await?;
            let resp = pb::MoveChildResponse { parent: Some(parent.to_pb()), child: Some(child.to_pb()), previous_parent: previous };
            self.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            Ok(resp)
        })
        .await
    }

    async fn delete_bag(
        &self,
        req: Request<pb::DeleteBagRequest>,
    ) -> AppResult<pb::DeleteBagResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(MANAGERS)?;
        let req = req.into_inner();
        let id = qr::normalize(&req.qr).map_err(qr_err)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = self.replay(&mut tx, &caller, "DeleteBag", &req).await? {
            return Ok(r);
        }
        let deleted: Option<BagRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"WITH b AS (DELETE FROM registry.bags WHERE qr = $1 AND child_count = 0 AND parent_qr IS NULL AND bill_id IS NULL RETURNING *)
               SELECT {BAG_COLUMNS} FROM b"#
        )))
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(deleted) = deleted else {
            let existing = store::bag(&mut tx, &id).await?;
            return Err(match existing {
                None => AppError::new(ErrorCode::BagNotFound, "no bag with that code"),
                Some(b) if b.child_count > 0 => {
                    AppError::new(ErrorCode::BagHasChildren, "unlink its children first")
                }
                Some(b) if b.parent_qr.is_some() => {
                    AppError::new(ErrorCode::BagLinked, "unlink it from its parent first")
                        .with_detail("parent_qr", b.parent_qr.unwrap_or_default())
                }
                Some(b) => AppError::new(ErrorCode::BagOnBill, "detach it from its bill first")
                    .with_detail("bill_id", b.bill_id.unwrap_or_default()),
            });
        };
        self.event(
            &mut tx,
            &caller,
            "registry.bag_deleted",
            &id,
            json!({"bag": deleted.to_pb().qr, "kind": deleted.kind, "area": deleted.area}),
        )
        .await?;
        let resp = pb::DeleteBagResponse {};
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    // ------------------------------------------------------------------ scan-only RPCs

    async fn ensure_parent(
        &self,
        req: Request<pb::EnsureParentRequest>,
    ) -> AppResult<pb::EnsureParentResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["scan"])?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let (id, line) = qr::parent_id(&req.qr, &self.0.lines).map_err(qr_err)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = self.replay(&mut tx, &caller, "EnsureParent", &req).await? {
            return Ok(r);
        }
        if let Some(existing) = store::bag(&mut tx, &id).await? {
            if !existing.is_parent() {
                return Err(AppError::new(
                    ErrorCode::QrIsChild,
                    "that is a child label, scan a parent bag",
                ));
            }
            caller.check_area(&existing.area)?;
            return Ok(pb::EnsureParentResponse {
                parent: Some(existing.to_pb()),
                created: false,
            });
        }
        let area = match (&user.area, user.role) {
            (Some(a), Role::Dispatcher) => a.clone(),
            _ if req.area.trim().is_empty() => {
                return Err(AppError::new(
                    ErrorCode::AreaRequired,
                    "name the area of this new parent bag",
                ));
            }
            _ => self.known_area(&req.area)?,
        };
        let (row, created) = match self
            .insert_parent(&mut tx, &id, &line.name, &area, &caller)
            .await?
        {
            Some(row) => (row, true),
            // Registered concurrently by someone else: re-select it.
            None => (store::parent(&mut tx, &id).await?, false),
        };
        if created {
            self.event(&mut tx, &caller, "registry.bag_registered", &id, json!({"bag": id, "kind": "parent", "area": row.area, "product_line": row.product_line}))
                .await?;
        }
        let resp = pb::EnsureParentResponse {
            parent: Some(row.to_pb()),
            created,
        };
        self.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    async fn link_child(
        &self,
        req: Request<pb::LinkChildRequest>,
    ) -> AppResult<pb::LinkChildResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["scan"])?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let parent_id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let raw_child = qr::normalize(&req.child_qr).map_err(qr_err)?;
        if raw_child == parent_id {
            return Err(AppError::new(
                ErrorCode::SameAsParent,
                "that is the parent itself, scan a child",
            ));
        }
        let child_id = qr::child_id(&req.child_qr, &self.0.lines).map_err(qr_err)?;
        tracetrack_common::db::retry(|| async {
            let mut tx = self.pool().begin().await?;
            if let Some(r) = self.replay(&mut tx, &caller, "LinkChild", &req).await? {
                return Ok(r);
            }
            let parent = store::parent(&mut tx, &parent_id).await?;
            caller.check_area(&parent.area)?;
            // One statement: register-or-claim the child row; the trigger counts it into the
            // parent (CHECK refuses past capacity, a frozen parent refuses any change).
            let linked: Option<store::LinkedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                r#"WITH old AS (SELECT area FROM registry.bags WHERE qr = $1),
                   b AS (
                     INSERT INTO registry.bags AS x (qr, kind, area, product_line, child_weight_kg, parent_qr, linked_by, linked_at, created_by)
                     VALUES ($1, 'child', $3, $5, $6, $2, $4, now(), $4)
                     ON CONFLICT (qr) DO UPDATE SET parent_qr = EXCLUDED.parent_qr, linked_by = EXCLUDED.linked_by,
                                                   linked_at = EXCLUDED.linked_at, area = EXCLUDED.area,
                                                   product_line = EXCLUDED.product_line, child_weight_kg = EXCLUDED.child_weight_kg
                       WHERE x.kind = 'child' AND x.parent_qr IS NULL
                     RETURNING *, (xmax = 0) AS inserted)
                   SELECT {BAG_COLUMNS}, b.inserted, (SELECT area FROM old) AS area_before FROM b"#
            )))
            .bind(&child_id)
            .bind(&parent_id)
            .bind(&parent.area)
            .bind(user.id)
            .bind(&parent.product_line)
            .bind(parent.child_weight_kg)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| store::link_error(e, &parent_id))?;
            let Some(store::LinkedRow { bag: child, inserted, area_before }) = linked else {
                // The child exists and was not free: say where it is.
                let existing = store::bag(&mut tx, &child_id)
                    .await?
                    .ok_or_else(|| AppError::new(ErrorCode::Conflict, "the child changed, retry"))?;
                if existing.is_parent() {
                    return Err(AppError::new(ErrorCode::QrIsParent, "that is a parent bag, scan a child"));
                }
                return match existing.parent_qr.as_deref() {
                    Some(p) if p == parent_id => {
                        let resp = pb::LinkChildResponse { parent: Some(parent.to_pb()), child: Some(existing.to_pb()), already_linked: true };
                        self.remember(&mut tx, &caller, &resp).await?;
                        tx.commit().await?;
                        Ok(resp)
                    }
                    Some(other) => Err(AppError::new(ErrorCode::ChildLinkedElsewhere, "this child is already in another parent bag")
                        .with_detail("other_parent_qr", other)),
                    None => Err(AppError::new(ErrorCode::Conflict, "the child changed, retry")),
                };
            };
            let parent = store::parent(&mut tx, &parent_id).await?;
            self.event(&mut tx, &caller, "registry.child_linked", &child_id, json!({"parent_qr": parent_id, "child_qr": child_id, "area": parent.area, "created": inserted, "area_before": area_before, "parent_child_count": parent.child_count, "capacity": parent.capacity}))
                .await?;
            let resp = pb::LinkChildResponse { parent: Some(parent.to_pb()), child: Some(child.to_pb()), already_linked: false };
            self.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            metrics::counter!("registry_links_total").increment(1);
            Ok(resp)
        })
        .await
    }

    async fn undo_last_link(
        &self,
        req: Request<pb::UndoLastLinkRequest>,
    ) -> AppResult<pb::UndoLastLinkResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["scan"])?;
        let user = caller.user()?.clone();
        let req = req.into_inner();
        let parent_id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let named_child = if req.child_qr.trim().is_empty() {
            None
        } else {
            Some(qr::normalize(&req.child_qr).map_err(qr_err)?)
        };
        tracetrack_common::db::retry(|| async {
            let mut tx = self.pool().begin().await?;
            if let Some(r) = self.replay(&mut tx, &caller, "UndoLastLink", &req).await? {
                return Ok(r);
            }
            let parent = store::parent(&mut tx, &parent_id).await?;
            caller.check_area(&parent.area)?;
            let undone: Option<String> = sqlx::query_scalar(
                r#"WITH c AS (SELECT qr FROM registry.bags
                              WHERE parent_qr = $1 AND linked_by = $2 AND linked_at > now() - interval '1 hour'
                              ORDER BY linked_at DESC, qr DESC LIMIT 1 FOR UPDATE SKIP LOCKED)
                   UPDATE registry.bags b SET parent_qr = NULL, linked_by = NULL, linked_at = NULL
                   FROM c WHERE b.qr = c.qr AND ($3::text IS NULL OR c.qr = $3) RETURNING b.qr"#,
            )
            .bind(&parent_id)
            .bind(user.id)
            .bind(named_child.as_deref())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| store::link_error(e, &parent_id))?;
            let Some(child_id) = undone else {
                return Err(match &named_child {
                    Some(c) => AppError::new(ErrorCode::NothingToUndo, "that child is not your newest link on this parent from the last hour")
                        .with_detail("child_qr", c),
                    None => AppError::new(ErrorCode::NothingToUndo, "you have no link on this parent from the last hour to undo"),
                });
            };
            let parent = store::parent(&mut tx, &parent_id).await?;
            self.event(&mut tx, &caller, "registry.child_unlinked", &child_id, json!({"parent_qr": parent_id, "child_qr": child_id, "undo": true, "area": parent.area, "parent_child_count": parent.child_count}))
                .await?;
            let resp = pb::UndoLastLinkResponse { parent: Some(parent.to_pb()), unlinked_child_qr: child_id };
            self.remember(&mut tx, &caller, &resp).await?;
            tx.commit().await?;
            Ok(resp)
        })
        .await
    }

    // ------------------------------------------------------------------ billing-only RPCs

    async fn claim_parent(
        &self,
        req: Request<pb::ClaimParentRequest>,
    ) -> AppResult<pb::ClaimParentResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let req = req.into_inner();
        let id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        if req.bill_id.is_empty() {
            return Err(AppError::invalid("bill_id is required"));
        }
        let mut tx = self.pool().begin().await?;
        let existing = store::bag(&mut tx, &id)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::BagNotFound, "no bag with that code"))?;
        if !existing.is_parent() {
            return Err(AppError::new(
                ErrorCode::NotAParent,
                "only parent bags go on bills",
            ));
        }
        let claimed: Option<BagRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            r#"WITH b AS (UPDATE registry.bags SET bill_id = $2 WHERE qr = $1 AND kind = 'parent' AND bill_id IS NULL RETURNING *)
               SELECT {BAG_COLUMNS} FROM b"#
        )))
        .bind(&id)
        .bind(&req.bill_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (row, already) = match claimed {
            Some(row) => (row, false),
            None => {
                let now = store::bag(&mut tx, &id).await?.ok_or_else(|| {
                    AppError::new(ErrorCode::BagNotFound, "no bag with that code")
                })?;
                match now.bill_id.as_deref() {
                    Some(b) if b == req.bill_id => (now, true),
                    Some(other) => {
                        return Err(AppError::new(
                            ErrorCode::OnOtherBill,
                            "this parent is on another bill",
                        )
                        .with_detail("other_bill_id", other));
                    }
                    None => {
                        return Err(AppError::new(
                            ErrorCode::Conflict,
                            "the parent changed, retry",
                        ))
                    }
                }
            }
        };
        if !already {
            self.event(
                &mut tx,
                &caller,
                "registry.parent_claimed",
                &id,
                json!({"parent_qr": id, "bill_id": req.bill_id}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(pb::ClaimParentResponse {
            parent: Some(row.to_pb()),
            already_claimed: already,
        })
    }

    async fn release_parent(
        &self,
        req: Request<pb::ReleaseParentRequest>,
    ) -> AppResult<pb::ReleaseParentResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let req = req.into_inner();
        let id = qr::normalize(&req.parent_qr).map_err(qr_err)?;
        let mut tx = self.pool().begin().await?;
        let r = sqlx::query(
            "UPDATE registry.bags SET bill_id = NULL WHERE qr = $1 AND bill_id = $2 AND NOT frozen",
        )
        .bind(&id)
        .bind(&req.bill_id)
        .execute(&mut *tx)
        .await?;
        let released = r.rows_affected() > 0;
        if !released {
            if let Some(b) = store::bag(&mut tx, &id).await? {
                if b.frozen && b.bill_id.as_deref() == Some(req.bill_id.as_str()) {
                    return Err(AppError::new(
                        ErrorCode::BillCompleted,
                        "the bill is completed; reopen it first",
                    ));
                }
            }
        } else {
            self.event(
                &mut tx,
                &caller,
                "registry.parent_released",
                &id,
                json!({"parent_qr": id, "bill_id": req.bill_id}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(pb::ReleaseParentResponse { released })
    }

    async fn set_frozen(&self, caller: &Caller, bill_id: &str, frozen: bool) -> AppResult<u32> {
        let mut tx = self.pool().begin().await?;
        // Lock the bill's parents in QR order, then flip them.
        let n = sqlx::query(
            r#"UPDATE registry.bags SET frozen = $2
               WHERE qr IN (SELECT qr FROM registry.bags WHERE bill_id = $1 AND frozen <> $2 ORDER BY qr FOR UPDATE)"#,
        )
        .bind(bill_id)
        .bind(frozen)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let kind = if frozen {
            "registry.parents_frozen"
        } else {
            "registry.parents_unfrozen"
        };
        self.event(
            &mut tx,
            caller,
            kind,
            bill_id,
            json!({"bill_id": bill_id, "parents": n}),
        )
        .await?;
        tx.commit().await?;
        Ok(n as u32)
    }

    async fn freeze(
        &self,
        req: Request<pb::FreezeParentsRequest>,
    ) -> AppResult<pb::FreezeParentsResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let frozen = self
            .set_frozen(&caller, &req.get_ref().bill_id, true)
            .await?;
        Ok(pb::FreezeParentsResponse { frozen })
    }

    async fn unfreeze(
        &self,
        req: Request<pb::UnfreezeParentsRequest>,
    ) -> AppResult<pb::UnfreezeParentsResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let unfrozen = self
            .set_frozen(&caller, &req.get_ref().bill_id, false)
            .await?;
        Ok(pb::UnfreezeParentsResponse { unfrozen })
    }

    async fn bill_figures(
        &self,
        req: Request<pb::GetBillFiguresRequest>,
    ) -> AppResult<pb::GetBillFiguresResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["billing"])?;
        let rows: Vec<(String, i64, i64, f64, f64)> = sqlx::query_as(
            r#"SELECT bill_id, count(*), coalesce(sum(child_count), 0)::bigint,
                      coalesce(sum(child_count * child_weight_kg), 0)::float8, coalesce(sum(parent_weight_kg), 0)::float8
               FROM registry.bags WHERE bill_id = ANY($1) GROUP BY bill_id"#,
        )
        .bind(&req.get_ref().bill_ids)
        .fetch_all(self.pool())
        .await?;
        Ok(pb::GetBillFiguresResponse {
            figures: rows
                .into_iter()
                .map(
                    |(bill_id, parents, children, actual, expected)| pb::BillFigures {
                        bill_id,
                        parent_count: parents as i32,
                        child_count: children,
                        actual_weight_kg: actual,
                        expected_weight_kg: expected,
                    },
                )
                .collect(),
        })
    }

    // ------------------------------------------------------------------ bulk import

    async fn import(
        &self,
        req: Request<Streaming<pb::ImportBagsRequest>>,
    ) -> AppResult<pb::ImportBagsResponse> {
        let caller = self.caller(&req).await?;
        caller.require_role(&[Role::Admin])?;
        let mut stream = req.into_inner();
        let mut resp = pb::ImportBagsResponse::default();
        let mut batch_no = 0u64;
        while let Some(batch) = stream.message().await.map_err(AppError::from)? {
            batch_no += 1;
            crate::import::write_batch(self, &caller, batch_no, batch, &mut resp).await?;
        }
        Ok(resp)
    }

    // ------------------------------------------------------------------ export

    /// Admin: every bag matching SearchBags' filters, in QR order, in chunks read from one
    /// snapshot (see `tracetrack_common::export`). The filters are checked and the first page
    /// read before the stream starts, so those errors are the call's own.
    async fn export_bags(
        &self,
        req: Request<pb::ExportBagsRequest>,
    ) -> AppResult<ExportStream<pb::ExportBagsChunk>> {
        let caller = self.caller(&req).await?;
        let user = caller.require_role(&[Role::Admin])?.clone();
        let req = req.into_inner();
        let filter = self.bag_filter(&user, &req.filter.unwrap_or_default())?;
        let limit = export::chunk_size(req.chunk_size);
        let permit = self.0.exports.acquire()?;
        let mut tx = export::snapshot(self.pool()).await?;
        let first = store::bags_by_qr(&mut tx, &filter, None, limit).await?;
        let pages = export::pages(
            permit,
            tx,
            first,
            limit,
            |b: &BagRow| b.qr.clone(),
            move |conn, after| {
                let filter = filter.clone();
                Box::pin(async move { store::bags_by_qr(conn, &filter, Some(&after), limit).await })
            },
            "bags",
        );
        Ok(pages
            .map(|page| {
                page.map(|rows| pb::ExportBagsChunk {
                    bags: rows.iter().map(BagRow::to_pb).collect(),
                })
                .map_err(Status::from)
            })
            .boxed())
    }

    pub(crate) fn lines(&self) -> &[ProductLine] {
        &self.0.lines
    }

    pub(crate) fn areas(&self) -> &[String] {
        &self.0.areas
    }

    pub(crate) async fn emit(
        &self,
        conn: &mut PgConnection,
        caller: &Caller,
        event_type: &str,
        id: &str,
        payload: serde_json::Value,
    ) -> AppResult<()> {
        self.event(conn, caller, event_type, id, payload).await
    }
}

fn reply<T>(r: AppResult<T>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::bag_registry_service_server::BagRegistryService for Registry {
    async fn register_bag(
        &self,
        r: Request<pb::RegisterBagRequest>,
    ) -> Result<Response<pb::RegisterBagResponse>, Status> {
        reply(Registry::register_bag(self, r).await)
    }
    async fn get_bag(
        &self,
        r: Request<pb::GetBagRequest>,
    ) -> Result<Response<pb::GetBagResponse>, Status> {
        reply(Registry::get_bag(self, r).await)
    }
    async fn get_bags(
        &self,
        r: Request<pb::GetBagsRequest>,
    ) -> Result<Response<pb::GetBagsResponse>, Status> {
        reply(Registry::get_bags(self, r).await)
    }
    async fn search_bags(
        &self,
        r: Request<pb::SearchBagsRequest>,
    ) -> Result<Response<pb::SearchBagsResponse>, Status> {
        reply(Registry::search_bags(self, r).await)
    }
    async fn list_children(
        &self,
        r: Request<pb::ListChildrenRequest>,
    ) -> Result<Response<pb::ListChildrenResponse>, Status> {
        reply(Registry::list_children(self, r).await)
    }
    async fn unlink_child(
        &self,
        r: Request<pb::UnlinkChildRequest>,
    ) -> Result<Response<pb::UnlinkChildResponse>, Status> {
        reply(Registry::unlink_child(self, r).await)
    }
    async fn move_child(
        &self,
        r: Request<pb::MoveChildRequest>,
    ) -> Result<Response<pb::MoveChildResponse>, Status> {
        reply(Registry::move_child(self, r).await)
    }
    async fn delete_bag(
        &self,
        r: Request<pb::DeleteBagRequest>,
    ) -> Result<Response<pb::DeleteBagResponse>, Status> {
        reply(Registry::delete_bag(self, r).await)
    }
    async fn import_bags(
        &self,
        r: Request<Streaming<pb::ImportBagsRequest>>,
    ) -> Result<Response<pb::ImportBagsResponse>, Status> {
        reply(Registry::import(self, r).await)
    }
    type ExportBagsStream = ExportStream<pb::ExportBagsChunk>;

    async fn export_bags(
        &self,
        r: Request<pb::ExportBagsRequest>,
    ) -> Result<Response<Self::ExportBagsStream>, Status> {
        reply(Registry::export_bags(self, r).await)
    }
    async fn ensure_parent(
        &self,
        r: Request<pb::EnsureParentRequest>,
    ) -> Result<Response<pb::EnsureParentResponse>, Status> {
        reply(Registry::ensure_parent(self, r).await)
    }
    async fn link_child(
        &self,
        r: Request<pb::LinkChildRequest>,
    ) -> Result<Response<pb::LinkChildResponse>, Status> {
        reply(Registry::link_child(self, r).await)
    }
    async fn undo_last_link(
        &self,
        r: Request<pb::UndoLastLinkRequest>,
    ) -> Result<Response<pb::UndoLastLinkResponse>, Status> {
        reply(Registry::undo_last_link(self, r).await)
    }
    async fn claim_parent(
        &self,
        r: Request<pb::ClaimParentRequest>,
    ) -> Result<Response<pb::ClaimParentResponse>, Status> {
        reply(Registry::claim_parent(self, r).await)
    }
    async fn release_parent(
        &self,
        r: Request<pb::ReleaseParentRequest>,
    ) -> Result<Response<pb::ReleaseParentResponse>, Status> {
        reply(Registry::release_parent(self, r).await)
    }
    async fn freeze_parents(
        &self,
        r: Request<pb::FreezeParentsRequest>,
    ) -> Result<Response<pb::FreezeParentsResponse>, Status> {
        reply(Registry::freeze(self, r).await)
    }
    async fn unfreeze_parents(
        &self,
        r: Request<pb::UnfreezeParentsRequest>,
    ) -> Result<Response<pb::UnfreezeParentsResponse>, Status> {
        reply(Registry::unfreeze(self, r).await)
    }
    async fn get_bill_figures(
        &self,
        r: Request<pb::GetBillFiguresRequest>,
    ) -> Result<Response<pb::GetBillFiguresResponse>, Status> {
        reply(Registry::bill_figures(self, r).await)
    }
}
