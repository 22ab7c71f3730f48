//! The stable error codes of TraceTrack and the one table that maps each to a gRPC status code and
//! an HTTP status. Services put the code in `google.rpc.ErrorInfo.reason`; the gateway answers
//! RFC 9457 problem documents with the HTTP status from this same table.
//!
//! The gRPC→HTTP mapping is deliberately our own: the standard table gives 400 for
//! FAILED_PRECONDITION where the SPEC wants 409 for conflicts with current state.

/// The gRPC status codes used here (kept free of a tonic dependency; values are the wire codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum GrpcCode {
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The `google.rpc.ErrorInfo.domain` of every TraceTrack error.
pub const ERROR_DOMAIN: &str = "tracetrack";

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal => ($grpc:ident, $http:literal), )*) => {
        /// Every stable error code. The string form is part of the API and never changes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable snake_case code.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            pub fn grpc_code(self) -> GrpcCode {
                match self { $( ErrorCode::$variant => GrpcCode::$grpc, )* }
            }

            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $http, )* }
            }

            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $( $code => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

codes! {
    // 400: bad input
    InvalidArgument = "invalid_argument" => (InvalidArgument, 400),
    InvalidQr = "invalid_qr" => (InvalidArgument, 400),
    AreaRequired = "area_required" => (InvalidArgument, 400),
    /// Details: `reason`.
    WeakPassword = "weak_password" => (InvalidArgument, 400),
    SameAsParent = "same_as_parent" => (InvalidArgument, 400),
    /// Details: `attached`.
    CapacityBelowAttached = "capacity_below_attached" => (FailedPrecondition, 400),
    /// An upload that is not a readable `.xlsx` workbook. Details: `sheet` when one sheet is.
    InvalidWorkbook = "invalid_workbook" => (InvalidArgument, 400),
    // 401: not logged in
    Unauthenticated = "unauthenticated" => (Unauthenticated, 401),
    InvalidCredentials = "invalid_credentials" => (Unauthenticated, 401),
    // 403: role, area or caller
    PermissionDenied = "permission_denied" => (PermissionDenied, 403),
    WrongArea = "wrong_area" => (PermissionDenied, 403),
    /// The session belongs to a user who must change their password first.
    PasswordChangeRequired = "password_change_required" => (PermissionDenied, 403),
    /// An RPC that exists for one service was called by another caller.
    CallerNotAllowed = "caller_not_allowed" => (PermissionDenied, 403),
    // 404
    NotFound = "not_found" => (NotFound, 404),
    UserNotFound = "user_not_found" => (NotFound, 404),
    BagNotFound = "bag_not_found" => (NotFound, 404),
    ParentNotFound = "parent_not_found" => (NotFound, 404),
    BillNotFound = "bill_not_found" => (NotFound, 404),
    NothingToUndo = "nothing_to_undo" => (NotFound, 404),
    // 409: conflict with current state
    UsernameTaken = "username_taken" => (AlreadyExists, 409),
    EmailTaken = "email_taken" => (AlreadyExists, 409),
    BagExists = "bag_exists" => (AlreadyExists, 409),
    BillExists = "bill_exists" => (AlreadyExists, 409),
    LastAdmin = "last_admin" => (FailedPrecondition, 409),
    /// Nobody changes their own role or deactivates themselves.
    SelfChangeForbidden = "self_change_forbidden" => (FailedPrecondition, 409),
    QrIsChild = "qr_is_child" => (FailedPrecondition, 409),
    QrIsParent = "qr_is_parent" => (FailedPrecondition, 409),
    ParentFull = "parent_full" => (FailedPrecondition, 409),
    /// Details: `other_parent_qr`.
    ChildLinkedElsewhere = "child_linked_elsewhere" => (FailedPrecondition, 409),
    ParentFrozen = "parent_frozen" => (FailedPrecondition, 409),
    BagHasChildren = "bag_has_children" => (FailedPrecondition, 409),
    BagLinked = "bag_linked" => (FailedPrecondition, 409),
    BagOnBill = "bag_on_bill" => (FailedPrecondition, 409),
    NotAParent = "not_a_parent" => (FailedPrecondition, 409),
    /// Details: `other_bill_id`.
    OnOtherBill = "on_other_bill" => (FailedPrecondition, 409),
    BillFull = "bill_full" => (FailedPrecondition, 409),
    BillCompleted = "bill_completed" => (FailedPrecondition, 409),
    BillIncomplete = "bill_incomplete" => (FailedPrecondition, 409),
    /// A concurrent change won; retrying the whole request is safe.
    Conflict = "conflict" => (Aborted, 409),
    // 413
    PayloadTooLarge = "payload_too_large" => (InvalidArgument, 413),
    // 422
    IdempotencyKeyReused = "idempotency_key_reused" => (FailedPrecondition, 422),
    // 423: details `seconds_left`
    AccountLocked = "account_locked" => (PermissionDenied, 423),
    // 429: details `retry_after_seconds`
    RateLimited = "rate_limited" => (ResourceExhausted, 429),
    Overloaded = "overloaded" => (ResourceExhausted, 429),
    // 503/504: a dependency is down or slow
    Unavailable = "unavailable" => (Unavailable, 503),
    DeadlineExceeded = "deadline_exceeded" => (DeadlineExceeded, 503),
    // 500: a bug
    Internal = "internal" => (Internal, 500),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every code SPEC.md names, with the HTTP status SPEC §3 gives it (or the status its kind
    /// implies: 400 bad input, 401, 403 role or area, 404, 409 conflict, 422, 423, 429, 503).
    const SPEC_CODES: &[(&str, u16)] = &[
        ("invalid_credentials", 401),
        ("account_locked", 423),
        ("rate_limited", 429),
        ("unauthenticated", 401),
        ("weak_password", 400),
        ("username_taken", 409),
        ("email_taken", 409),
        ("last_admin", 409),
        ("area_required", 400),
        ("invalid_qr", 400),
        ("qr_is_child", 409),
        ("wrong_area", 403),
        ("parent_not_found", 404),
        ("parent_full", 409),
        ("child_linked_elsewhere", 409),
        ("qr_is_parent", 409),
        ("parent_frozen", 409),
        ("same_as_parent", 400),
        ("nothing_to_undo", 404),
        ("bag_not_found", 404),
        ("bag_exists", 409),
        ("bag_has_children", 409),
        ("bag_linked", 409),
        ("bag_on_bill", 409),
        ("bill_exists", 409),
        ("invalid_argument", 400),
        ("bill_not_found", 404),
        ("capacity_below_attached", 400),
        ("bill_completed", 409),
        ("not_a_parent", 409),
        ("on_other_bill", 409),
        ("bill_full", 409),
        ("bill_incomplete", 409),
        ("idempotency_key_reused", 422),
    ];

    #[test]
    fn every_spec_code_is_in_the_table_with_the_spec_status() {
        for (code, http) in SPEC_CODES {
            let c =
                ErrorCode::parse(code).unwrap_or_else(|| panic!("{code} missing from the table"));
            assert_eq!(c.http_status(), *http, "{code}");
        }
    }

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = HashSet::new();
        for c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "duplicate {s}");
            assert!(
                s.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{s}"
            );
            assert_eq!(ErrorCode::parse(s), Some(*c));
        }
    }

    #[test]
    fn grpc_and_http_agree_in_kind() {
        for c in ErrorCode::ALL {
            let ok = match c.grpc_code() {
                GrpcCode::InvalidArgument => matches!(c.http_status(), 400 | 413),
                GrpcCode::Unauthenticated => c.http_status() == 401,
                GrpcCode::PermissionDenied => matches!(c.http_status(), 403 | 423),
                GrpcCode::NotFound => c.http_status() == 404,
                GrpcCode::AlreadyExists | GrpcCode::Aborted => c.http_status() == 409,
                GrpcCode::FailedPrecondition => matches!(c.http_status(), 400 | 409 | 422),
                GrpcCode::ResourceExhausted => c.http_status() == 429,
                GrpcCode::Unavailable | GrpcCode::DeadlineExceeded => c.http_status() == 503,
                GrpcCode::Internal => c.http_status() == 500,
            };
            assert!(ok, "{c}: {:?} vs {}", c.grpc_code(), c.http_status());
        }
    }

    /// The SPEC itself, when it sits beside the checkout: every code in the error column of the
    /// HTTP API table must be known here, so a new code in the SPEC cannot be forgotten.
    #[test]
    fn spec_error_column_is_covered() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/SPEC.md");
        let Ok(spec) = std::fs::read_to_string(path) else {
            eprintln!(
                "SPEC.md not found beside the checkout; the literal list above still applies"
            );
            return;
        };
        let known: HashSet<&str> = SPEC_CODES.iter().map(|(c, _)| *c).collect();
        let mut found = 0;
        for line in spec
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("/api/v1"))
        {
            let errors = line.trim_end_matches('|').rsplit('|').next().unwrap_or("");
            let parts: Vec<&str> = errors.split('`').collect();
            for (i, tok) in parts.iter().enumerate().skip(1).step_by(2) {
                // `(+`other_parent_qr`)` names a detail of the error before it, not a code.
                let is_detail = parts[i - 1].ends_with('+');
                if !is_detail
                    && !tok.is_empty()
                    && tok.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')
                {
                    found += 1;
                    assert!(ErrorCode::parse(tok).is_some(), "SPEC code {tok} missing");
                    assert!(
                        known.contains(tok),
                        "SPEC code {tok} missing from SPEC_CODES"
                    );
                }
            }
        }
        assert!(found > 20, "parsed only {found} codes from SPEC.md");
    }
}
