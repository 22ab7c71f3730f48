//! The stable error codes of TraceTrack and the one table that maps each to a gRPC status code and
//! an HTTP status. Services put the code in `google.rpc.ErrorInfo.reason`; the gateway answers
//! RFC 9457 problem documents with the HTTP status from this same table.
//!
//! The third column says whether a code is **retryable** (the same request, with the same
//! idempotency key, may succeed if sent again later) or **definitive** (sending it again gives the
//! same answer until something else changes). The gateway serves it as the problem document's
//! `retryable` member, and the web client's offline queue follows it (SPEC §2 "Errors", §4):
//! a retryable answer keeps the request queued, a definitive one ends it as a refusal.
//!
//! - `unavailable`, `deadline_exceeded`: a dependency is down or slow; it comes back.
//! - `rate_limited`, `overloaded`: the limit or the load passes (honour `Retry-After`).
//! - `conflict`: a concurrent change won; the whole request is safe to run again.
//! - `internal`: a 500 is a bug, but it is as likely a transient fault not yet mapped to
//!   `unavailable` as a request that always fails; a request that is idempotent by its key loses
//!   nothing by being tried again with backoff, while dropping it loses a scan the user was told
//!   was saved. So it is retryable.
//! - `unauthenticated`, `password_change_required`: the request itself is fine; it succeeds once
//!   the user logs in again (or changes the temporary password). Retryable after that user
//!   action, not blindly; a queue keeps it until then.
//! - Everything else is definitive: bad input (400, 413), the role or area (403), not found (404),
//!   a conflict with current state (409), a reused key (422), a locked account (423: the lockout
//!   passes, but a login is never replayed unattended).
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
    (@retry retryable) => { true };
    (@retry definitive) => { false };
    ($( $(#[$doc:meta])* $variant:ident = $code:literal => ($grpc:ident, $http:literal, $retry:ident), )*) => {
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

            /// Whether the same request (same body, same idempotency key) may succeed if sent again
            /// later: the dependency comes back, the rate limit or the load passes, a concurrent
            /// change is over, the user logs in again. Offline queues keep retryable requests and
            /// drop a request only on a definitive code (SPEC §2 "Errors", §4).
            pub fn is_retryable(self) -> bool {
                match self { $( ErrorCode::$variant => codes!(@retry $retry), )* }
            }

            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $( $code => Some(ErrorCode::$variant), )* _ => None }
            }
        }
    };
}

codes! {
    // 400: bad input
    InvalidArgument = "invalid_argument" => (InvalidArgument, 400, definitive),
    InvalidQr = "invalid_qr" => (InvalidArgument, 400, definitive),
    AreaRequired = "area_required" => (InvalidArgument, 400, definitive),
    /// Details: `reason`.
    WeakPassword = "weak_password" => (InvalidArgument, 400, definitive),
    SameAsParent = "same_as_parent" => (InvalidArgument, 400, definitive),
    /// Details: `attached`.
    CapacityBelowAttached = "capacity_below_attached" => (FailedPrecondition, 400, definitive),
    /// An upload that is not a readable `.xlsx` workbook. Details: `sheet` when one sheet is.
    InvalidWorkbook = "invalid_workbook" => (InvalidArgument, 400, definitive),
    // 401: not logged in (retryable once the user has logged in again)
    Unauthenticated = "unauthenticated" => (Unauthenticated, 401, retryable),
    InvalidCredentials = "invalid_credentials" => (Unauthenticated, 401, definitive),
    /// A login's second-factor challenge is unknown, used or past its time: log in again.
    LoginChallengeExpired = "login_challenge_expired" => (Unauthenticated, 401, definitive),
    // 403: role, area or caller
    PermissionDenied = "permission_denied" => (PermissionDenied, 403, definitive),
    WrongArea = "wrong_area" => (PermissionDenied, 403, definitive),
    /// The session belongs to a user who must change their password first (retryable once they
    /// have: the request itself was fine).
    PasswordChangeRequired = "password_change_required" => (PermissionDenied, 403, retryable),
    /// The session belongs to an admin who must enrol a second factor first
    /// (`require_2fa_for_admins`); retryable once they have.
    TwoFactorRequired = "two_factor_required" => (PermissionDenied, 403, retryable),
    /// An RPC that exists for one service was called by another caller.
    CallerNotAllowed = "caller_not_allowed" => (PermissionDenied, 403, definitive),
    // 404
    NotFound = "not_found" => (NotFound, 404, definitive),
    UserNotFound = "user_not_found" => (NotFound, 404, definitive),
    BagNotFound = "bag_not_found" => (NotFound, 404, definitive),
    ParentNotFound = "parent_not_found" => (NotFound, 404, definitive),
    BillNotFound = "bill_not_found" => (NotFound, 404, definitive),
    NothingToUndo = "nothing_to_undo" => (NotFound, 404, definitive),
    TicketNotFound = "ticket_not_found" => (NotFound, 404, definitive),
    // 409: conflict with current state
    UsernameTaken = "username_taken" => (AlreadyExists, 409, definitive),
    EmailTaken = "email_taken" => (AlreadyExists, 409, definitive),
    BagExists = "bag_exists" => (AlreadyExists, 409, definitive),
    BillExists = "bill_exists" => (AlreadyExists, 409, definitive),
    LastAdmin = "last_admin" => (FailedPrecondition, 409, definitive),
    /// Nobody changes their own role or deactivates themselves.
    SelfChangeForbidden = "self_change_forbidden" => (FailedPrecondition, 409, definitive),
    QrIsChild = "qr_is_child" => (FailedPrecondition, 409, definitive),
    QrIsParent = "qr_is_parent" => (FailedPrecondition, 409, definitive),
    ParentFull = "parent_full" => (FailedPrecondition, 409, definitive),
    /// Details: `other_parent_qr`.
    ChildLinkedElsewhere = "child_linked_elsewhere" => (FailedPrecondition, 409, definitive),
    ParentFrozen = "parent_frozen" => (FailedPrecondition, 409, definitive),
    BagHasChildren = "bag_has_children" => (FailedPrecondition, 409, definitive),
    BagLinked = "bag_linked" => (FailedPrecondition, 409, definitive),
    BagOnBill = "bag_on_bill" => (FailedPrecondition, 409, definitive),
    NotAParent = "not_a_parent" => (FailedPrecondition, 409, definitive),
    /// Details: `other_bill_id`.
    OnOtherBill = "on_other_bill" => (FailedPrecondition, 409, definitive),
    BillFull = "bill_full" => (FailedPrecondition, 409, definitive),
    BillCompleted = "bill_completed" => (FailedPrecondition, 409, definitive),
    BillIncomplete = "bill_incomplete" => (FailedPrecondition, 409, definitive),
    /// Returns (SPEC §1): the parent is on no bill.
    ParentNotBilled = "parent_not_billed" => (FailedPrecondition, 409, definitive),
    /// Returns: the parent's bill is not completed (detach it instead). Details: `bill_id`.
    BillNotCompleted = "bill_not_completed" => (FailedPrecondition, 409, definitive),
    /// Returns: the parent is on another open return ticket. Details: `other_ticket_id`.
    OnOtherTicket = "on_other_ticket" => (FailedPrecondition, 409, definitive),
    /// The return ticket is committed or cancelled.
    TicketNotOpen = "ticket_not_open" => (FailedPrecondition, 409, definitive),
    /// A return ticket is committed only with at least one parent.
    TicketEmpty = "ticket_empty" => (FailedPrecondition, 409, definitive),
    /// A bill with returns can be neither reopened nor deleted.
    BillHasReturns = "bill_has_returns" => (FailedPrecondition, 409, definitive),
    /// The user already has a confirmed second factor (disable or reset it first).
    TwoFactorEnrolled = "two_factor_enrolled" => (FailedPrecondition, 409, definitive),
    /// The user has no (pending, for a confirmation) second factor.
    TwoFactorNotEnrolled = "two_factor_not_enrolled" => (FailedPrecondition, 409, definitive),
    /// A feature its configuration leaves off (second factor without an encryption key,
    /// password reset without SMTP).
    FeatureDisabled = "feature_disabled" => (FailedPrecondition, 409, definitive),
    /// A password-reset link that is unknown, used or past its hour.
    ResetLinkInvalid = "reset_link_invalid" => (FailedPrecondition, 409, definitive),
    /// A concurrent change won; retrying the whole request is safe (retryable).
    Conflict = "conflict" => (Aborted, 409, retryable),
    // 413
    PayloadTooLarge = "payload_too_large" => (InvalidArgument, 413, definitive),
    // 422
    IdempotencyKeyReused = "idempotency_key_reused" => (FailedPrecondition, 422, definitive),
    // 423: details `seconds_left`
    AccountLocked = "account_locked" => (PermissionDenied, 423, definitive),
    // 429: details `retry_after_seconds`
    RateLimited = "rate_limited" => (ResourceExhausted, 429, retryable),
    Overloaded = "overloaded" => (ResourceExhausted, 429, retryable),
    // 503/504: a dependency is down or slow
    Unavailable = "unavailable" => (Unavailable, 503, retryable),
    DeadlineExceeded = "deadline_exceeded" => (DeadlineExceeded, 503, retryable),
    // 500: a bug, yet retryable: the same request may well succeed later (see the module docs).
    Internal = "internal" => (Internal, 500, retryable),
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

    /// Every code's retryability, decided one by one: the match has no wildcard, so a new code
    /// does not compile here until someone decides whether a client may send it again.
    fn decided_retryable(c: ErrorCode) -> bool {
        use ErrorCode::*;
        match c {
            Unavailable
            | DeadlineExceeded
            | RateLimited
            | Overloaded
            | Conflict
            | Internal
            | Unauthenticated
            | PasswordChangeRequired
            | TwoFactorRequired => true,
            InvalidArgument
            | InvalidQr
            | AreaRequired
            | WeakPassword
            | SameAsParent
            | CapacityBelowAttached
            | InvalidWorkbook
            | InvalidCredentials
            | PermissionDenied
            | WrongArea
            | CallerNotAllowed
            | NotFound
            | UserNotFound
            | BagNotFound
            | ParentNotFound
            | BillNotFound
            | NothingToUndo
            | UsernameTaken
            | EmailTaken
            | BagExists
            | BillExists
            | LastAdmin
            | SelfChangeForbidden
            | QrIsChild
            | QrIsParent
            | ParentFull
            | ChildLinkedElsewhere
            | ParentFrozen
            | BagHasChildren
            | BagLinked
            | BagOnBill
            | NotAParent
            | OnOtherBill
            | BillFull
            | BillCompleted
            | BillIncomplete
            | TicketNotFound
            | ParentNotBilled
            | BillNotCompleted
            | OnOtherTicket
            | TicketNotOpen
            | TicketEmpty
            | BillHasReturns
            | PayloadTooLarge
            | IdempotencyKeyReused
            | AccountLocked
            | LoginChallengeExpired
            | TwoFactorEnrolled
            | TwoFactorNotEnrolled
            | FeatureDisabled
            | ResetLinkInvalid => false,
        }
    }

    #[test]
    fn every_code_is_retryable_or_definitive_as_decided() {
        for c in ErrorCode::ALL {
            assert_eq!(c.is_retryable(), decided_retryable(*c), "{c}");
        }
        // The ones SPEC §2 and §4 name.
        for code in [
            "unavailable",
            "rate_limited",
            "overloaded",
            "conflict",
            "unauthenticated",
        ] {
            assert!(ErrorCode::parse(code).unwrap().is_retryable(), "{code}");
        }
        for (code, _) in SPEC_CODES {
            let c = ErrorCode::parse(code).unwrap();
            // SPEC §4: 5xx, 429 and 401 are retried; a 4xx domain code is definitive.
            let by_status = matches!(c.http_status(), 401 | 429 | 500..=599);
            let wrong_password = c == ErrorCode::InvalidCredentials; // stays wrong if sent again
            assert_eq!(c.is_retryable(), by_status && !wrong_password, "{code}");
        }
    }

    #[test]
    fn retryable_by_status_kind() {
        for c in ErrorCode::ALL {
            match c.http_status() {
                500..=599 | 429 => assert!(c.is_retryable(), "{c}: a 5xx or 429 is retried"),
                400 | 404 | 413 | 422 | 423 => {
                    assert!(!c.is_retryable(), "{c}: bad input is final")
                }
                _ => {}
            }
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
