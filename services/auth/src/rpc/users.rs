//! Users, for admins: CreateUser, GetUser, ListUsers, UpdateUser, DeactivateUser, UnlockUser,
//! UnlockAllUsers.

use secrecy::SecretString;
use serde_json::json;
use tonic::Request;
use tracetrack_common::caller::Caller;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::{ErrorCode, Role};
use tracetrack_proto::auth::v1 as pb;
use uuid::Uuid;

use crate::convert::{audit_view, role_from_pb, to_pb};
use crate::password;
use crate::rules::{parse_id, validate_email, validate_username};
use crate::state::{Auth, MUTATIONS};
use crate::store::{self, UserRow};
use tracetrack_common::page;

impl Auth {
    pub(crate) async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> AppResult<pb::CreateUserResponse> {
        let caller = self.admin(&req).await?;
        let req = req.into_inner();
        let username = req.username.trim().to_owned();
        validate_username(&username)?;
        let email = req.email.trim().to_lowercase();
        validate_email(&email)?;
        let role = role_from_pb(req.role)?;
        let area = self.area_for(role, Some(&req.dispatch_area))?;
        password::check_policy(&username, &req.password)?;

        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay(&mut tx, &caller, "CreateUser", &req)
            .await?
        {
            return Ok(r);
        }
        let hash = self
            .0
            .hasher
            .hash(&SecretString::from(req.password.clone()))
            .await?;
        let id = Uuid::now_v7();
        store::insert_user(
            &mut tx,
            &store::NewUser {
                id,
                username: &username,
                email: &email,
                password_hash: &hash,
                role: role.as_str(),
                dispatch_area: area.as_deref(),
            },
        )
        .await?;
        let row = store::user_by_id(&mut tx, id, false)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("inserted user vanished")))?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.user_created",
            &id.to_string(),
            json!({"after": audit_view(&row)}),
        )
        .await?;
        let resp = pb::CreateUserResponse {
            user: Some(to_pb(&row)),
        };
        MUTATIONS.remember(&mut tx, &caller, &resp).await?;
        tx.commit().await?;
        Ok(resp)
    }

    pub(crate) async fn get_user(
        &self,
        req: Request<pb::GetUserRequest>,
    ) -> AppResult<pb::GetUserResponse> {
        self.admin(&req).await?;
        let id = parse_id(&req.get_ref().id)?;
        let mut conn = self.pool().acquire().await?;
        let row = store::user_by_id(&mut conn, id, false)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        Ok(pb::GetUserResponse {
            user: Some(to_pb(&row)),
        })
    }

    pub(crate) async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> AppResult<pb::ListUsersResponse> {
        self.admin(&req).await?;
        let req = req.into_inner();
        let size = page::size(req.page_size);
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(page::decode(&req.page_token, 1)?.remove(0))
        };
        let role = match req.role {
            0 => None,
            r => Some(role_from_pb(r)?.as_str()),
        };
        let rows = store::list_users(
            self.pool(),
            &store::UserFilter {
                after,
                prefix: req.query.trim().to_lowercase(),
                role,
                include_inactive: req.include_inactive,
                limit: size + 1,
            },
        )
        .await?;
        let more = rows.len() as i64 > size;
        let users: Vec<pb::User> = rows.iter().take(size as usize).map(to_pb).collect();
        let next_page_token = match (more, users.last()) {
            // The last (lower-cased) username of the page.
            (true, Some(last)) => page::encode(&[last.username.to_lowercase()]),
            _ => String::new(),
        };
        Ok(pb::ListUsersResponse {
            users,
            next_page_token,
        })
    }

    pub(crate) async fn update_user(
        &self,
        req: Request<pb::UpdateUserRequest>,
    ) -> AppResult<pb::UpdateUserResponse> {
        let caller = self.admin(&req).await?;
        let req = req.into_inner();
        let user = self.change_user(&caller, "UpdateUser", &req).await?;
        Ok(pb::UpdateUserResponse { user: Some(user) })
    }

    /// Every change to a user's email, role, area or active flag, with the self and last-admin
    /// rules, under the admin lock.
    async fn change_user(
        &self,
        caller: &Caller,
        rpc: &str,
        req: &pb::UpdateUserRequest,
    ) -> AppResult<pb::User> {
        let me = caller.user()?.id;
        let id = parse_id(&req.id)?;
        let mut tx = self.pool().begin().await?;
        if let Some(r) = MUTATIONS
            .replay::<pb::User>(&mut tx, caller, rpc, req)
            .await?
        {
            return Ok(r);
        }
        store::lock_admins(&mut tx).await?;
        let before = store::user_by_id(&mut tx, id, true)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        let old_role = Role::parse(&before.role)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("bad role")))?;
        let role = match req.role {
            Some(r) => role_from_pb(r)?,
            None => old_role,
        };
        let active = req.active.unwrap_or(before.active);
        if id == me && (role != old_role || !active) {
            return Err(AppError::new(
                ErrorCode::SelfChangeForbidden,
                "you cannot change your own role or deactivate yourself",
            ));
        }
        let area = self.area_for(
            role,
            req.dispatch_area
                .as_deref()
                .or(before.dispatch_area.as_deref()),
        )?;
        let email = match &req.email {
            Some(e) => {
                let e = e.trim().to_lowercase();
                validate_email(&e)?;
                e
            }
            None => before.email.clone(),
        };
        let was_admin = old_role == Role::Admin && before.active;
        let stays_admin = role == Role::Admin && active;
        if was_admin && !stays_admin && store::other_active_admins(&mut tx, id).await? == 0 {
            return Err(AppError::new(
                ErrorCode::LastAdmin,
                "this is the last active admin",
            ));
        }
        store::update_user(
            &mut tx,
            id,
            &store::UserChange {
                email: &email,
                role: role.as_str(),
                dispatch_area: area.as_deref(),
                active,
            },
        )
        .await?;
        if !active && before.active {
            store::end_user_sessions(&mut tx, id, None, "deactivated").await?;
        }
        let after = store::user_by_id(&mut tx, id, false)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("updated user vanished")))?;
        let event = if !active && before.active {
            "auth.user_deactivated"
        } else {
            "auth.user_changed"
        };
        self.audit(
            &mut tx,
            caller.actor(),
            event,
            &id.to_string(),
            json!({"before": audit_view(&before), "after": audit_view(&after)}),
        )
        .await?;
        let user = to_pb(&after);
        MUTATIONS.remember(&mut tx, caller, &user).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub(crate) async fn deactivate_user(
        &self,
        req: Request<pb::DeactivateUserRequest>,
    ) -> AppResult<pb::DeactivateUserResponse> {
        let caller = self.admin(&req).await?;
        let update = pb::UpdateUserRequest {
            id: req.into_inner().id,
            active: Some(false),
            ..Default::default()
        };
        let user = self.change_user(&caller, "DeactivateUser", &update).await?;
        Ok(pb::DeactivateUserResponse { user: Some(user) })
    }

    pub(crate) async fn unlock_user(
        &self,
        req: Request<pb::UnlockUserRequest>,
    ) -> AppResult<pb::UnlockUserResponse> {
        let caller = self.admin(&req).await?;
        let id = parse_id(&req.get_ref().id)?;
        let mut tx = self.pool().begin().await?;
        let row = store::user_by_id(&mut tx, id, false)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))?;
        let was_locked = row.locked_until.is_some();
        store::clear_failures(&mut tx, &row.username.to_lowercase()).await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.user_unlocked",
            &id.to_string(),
            json!({"was_locked": was_locked}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::UnlockUserResponse {
            user: Some(to_pb(&UserRow {
                locked_until: None,
                ..row
            })),
        })
    }

    pub(crate) async fn unlock_all_users(
        &self,
        req: Request<pb::UnlockAllUsersRequest>,
    ) -> AppResult<pb::UnlockAllUsersResponse> {
        let caller = self.admin(&req).await?;
        let mut tx = self.pool().begin().await?;
        let locked = store::clear_all_failures(&mut tx).await?;
        self.audit(
            &mut tx,
            caller.actor(),
            "auth.users_unlocked_all",
            "",
            json!({"unlocked": locked}),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::UnlockAllUsersResponse {
            unlocked: locked as u32,
        })
    }
}
