//! What billing reads from bag-registry (bags, and the figures of bills: child counts and actual
//! weights), and how registry errors are passed on.

use std::collections::HashMap;

use tonic::Status;
use tracetrack_common::caller::Caller;
use tracetrack_common::client;
use tracetrack_common::{AppError, AppResult};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as pb;
use tracetrack_proto::registry::v1 as reg;

use crate::state::Billing;

/// A registry error, passed on unchanged (code, message and details such as `other_bill_id`),
/// except that a transport failure says which dependency failed instead of leaking its text.
pub fn registry_error(status: &Status) -> AppError {
    AppError::from_upstream(status, "the bag registry")
}

/// Whether a failed registry call may nevertheless have taken effect (no answer, or a failure
/// while committing): then the saga's intent stays for a retry or the sweeper. Every other error
/// is the registry's refusal, made before it changed anything.
pub fn maybe_applied(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Unavailable
            | ErrorCode::DeadlineExceeded
            | ErrorCode::Internal
            | ErrorCode::Overloaded
    )
}

pub(crate) fn apply_figures(bill: &mut pb::Bill, figures: Option<&reg::BillFigures>) {
    bill.child_count = figures.map(|f| f.child_count).unwrap_or(0);
    bill.actual_weight_kg = figures.map(|f| f.actual_weight_kg).unwrap_or(0.0);
}

impl Billing {
    /// Child counts and actual weights of these bills, from bag-registry in one call.
    pub(crate) async fn figures(
        &self,
        token: Option<&str>,
        bill_ids: Vec<String>,
    ) -> AppResult<HashMap<String, reg::BillFigures>> {
        if bill_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let resp = self
            .registry()
            .get_bill_figures(client::request(
                reg::GetBillFiguresRequest { bill_ids },
                token,
                None,
            ))
            .await
            .map_err(|s| registry_error(&s))?;
        Ok(resp
            .into_inner()
            .figures
            .into_iter()
            .map(|f| (f.bill_id.clone(), f))
            .collect())
    }

    /// The registry's view of these bags (one call; missing ones are left out).
    pub(crate) async fn bags(
        &self,
        token: Option<&str>,
        qrs: Vec<String>,
    ) -> AppResult<HashMap<String, reg::Bag>> {
        if qrs.is_empty() {
            return Ok(HashMap::new());
        }
        let resp = self
            .registry()
            .get_bags(client::request(reg::GetBagsRequest { qrs }, token, None))
            .await
            .map_err(|s| registry_error(&s))?;
        Ok(resp
            .into_inner()
            .bags
            .into_iter()
            .map(|b| (b.qr.clone(), b))
            .collect())
    }

    /// Fills a Bill's figures from bag-registry (the answer of every mutation, replays too).
    pub(crate) async fn with_figures(
        &self,
        caller: &Caller,
        bill: &mut Option<pb::Bill>,
    ) -> AppResult<()> {
        if let Some(b) = bill.as_mut() {
            let figures = self
                .figures(caller.user_token.as_deref(), vec![b.bill_id.clone()])
                .await?;
            apply_figures(b, figures.get(&b.bill_id));
        }
        Ok(())
    }

    /// Bills as answered, each with its figures (one GetBillFigures call for the lot).
    pub(crate) async fn with_figures_all(
        &self,
        token: Option<&str>,
        rows: &[crate::store::BillRow],
    ) -> AppResult<Vec<pb::Bill>> {
        let figures = self
            .figures(token, rows.iter().map(|r| r.bill_id.clone()).collect())
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let mut b = crate::convert::to_pb(r);
                apply_figures(&mut b, figures.get(&r.bill_id));
                b
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_refusals_pass_through_and_transport_failures_are_ambiguous() {
        let status: Status = AppError::new(ErrorCode::OnOtherBill, "on another bill")
            .with_detail("other_bill_id", "B-1")
            .into();
        let e = registry_error(&status);
        assert_eq!(e.code, ErrorCode::OnOtherBill);
        assert_eq!(e.detail("other_bill_id"), Some("B-1"));
        assert!(!maybe_applied(e.code));
        let e = registry_error(&Status::unavailable("tcp connect error"));
        assert!(maybe_applied(e.code));
        assert!(!e.message.contains("tcp"));
        assert!(maybe_applied(
            registry_error(&Status::deadline_exceeded("late")).code
        ));
    }
}
