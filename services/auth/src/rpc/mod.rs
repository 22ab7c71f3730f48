//! auth's RPCs, one module per capability; each handler is an inherent `async fn` on [`Auth`]
//! that answers `AppResult<T>`. The two tonic services below (`AuthService`, and
//! `UserAdminService` for admins) only call it and wrap the answer.

pub(crate) mod api_keys;
mod passwords;
pub(crate) mod reset;
mod second_factor;
mod sessions;
mod users;

use tracetrack_proto::auth::v1 as pb;

use crate::state::Auth;

tracetrack_common::service! {
    Auth: pb::auth_service_server::AuthService {
        fn login(pb::LoginRequest) -> pb::LoginResponse;
        fn logout(pb::LogoutRequest) -> pb::LogoutResponse;
        fn who_am_i(pb::WhoAmIRequest) -> pb::WhoAmIResponse;
        fn authenticate(pb::AuthenticateRequest) -> pb::AuthenticateResponse;
        fn change_password(pb::ChangePasswordRequest) -> pb::ChangePasswordResponse;
        // Second factor and password reset by e-mail (issue 17 §1, §3).
        fn complete_login(pb::CompleteLoginRequest) -> pb::LoginResponse;
        fn begin_two_factor_enrolment(pb::BeginTwoFactorEnrolmentRequest) -> pb::BeginTwoFactorEnrolmentResponse;
        fn confirm_two_factor_enrolment(pb::ConfirmTwoFactorEnrolmentRequest) -> pb::ConfirmTwoFactorEnrolmentResponse;
        fn disable_two_factor(pb::DisableTwoFactorRequest) -> pb::DisableTwoFactorResponse;
        fn request_password_reset(pb::RequestPasswordResetRequest) -> pb::RequestPasswordResetResponse;
        fn complete_password_reset(pb::CompletePasswordResetRequest) -> pb::CompletePasswordResetResponse;
    }
}

tracetrack_common::service! {
    Auth: pb::user_admin_service_server::UserAdminService {
        fn create_user(pb::CreateUserRequest) -> pb::CreateUserResponse;
        fn get_user(pb::GetUserRequest) -> pb::GetUserResponse;
        fn list_users(pb::ListUsersRequest) -> pb::ListUsersResponse;
        fn update_user(pb::UpdateUserRequest) -> pb::UpdateUserResponse;
        fn deactivate_user(pb::DeactivateUserRequest) -> pb::DeactivateUserResponse;
        fn unlock_user(pb::UnlockUserRequest) -> pb::UnlockUserResponse;
        fn unlock_all_users(pb::UnlockAllUsersRequest) -> pb::UnlockAllUsersResponse;
        fn reset_password(pb::ResetPasswordRequest) -> pb::ResetPasswordResponse;
        fn reset_two_factor(pb::ResetTwoFactorRequest) -> pb::ResetTwoFactorResponse;
        // API keys for integrations (issue 17 §2).
        fn create_api_key(pb::CreateApiKeyRequest) -> pb::CreateApiKeyResponse;
        fn list_api_keys(pb::ListApiKeysRequest) -> pb::ListApiKeysResponse;
        fn revoke_api_key(pb::RevokeApiKeyRequest) -> pb::RevokeApiKeyResponse;
    }
}
