//! Password reset by e-mail (issue 17 §3).

use tonic::Request;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as pb;

use crate::state::Auth;

fn off() -> AppError {
    AppError::new(
        ErrorCode::FeatureDisabled,
        "password reset by e-mail is not configured on this server",
    )
}

impl Auth {
    pub(crate) async fn request_password_reset(
        &self,
        req: Request<pb::RequestPasswordResetRequest>,
    ) -> AppResult<pb::RequestPasswordResetResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["gateway"])?;
        Err(off())
    }

    pub(crate) async fn complete_password_reset(
        &self,
        req: Request<pb::CompletePasswordResetRequest>,
    ) -> AppResult<pb::CompletePasswordResetResponse> {
        let caller = self.caller(&req).await?;
        caller.require_service(&["gateway"])?;
        Err(off())
    }
}
