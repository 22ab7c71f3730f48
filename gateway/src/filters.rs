//! The query parameters lists and exports share: one filter type per table, turned into the owning
//! service's request in one place, so a list page and its export always select the same rows.

use serde::Deserialize;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::billing::v1 as billing;
use tracetrack_proto::registry::v1 as reg;
use tracetrack_proto::scan::v1 as scan;
use utoipa::IntoParams;

use crate::dto::timestamp;
use crate::error::{ApiError, ApiResult};

type Time = Option<prost_types::Timestamp>;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, message.into())
}

/// `from` (at or after) and `to` (before), RFC 3339.
fn range(from: &Option<String>, to: &Option<String>) -> ApiResult<(Time, Time)> {
    Ok((timestamp(from).map_err(bad)?, timestamp(to).map_err(bad)?))
}

/// One page of a keyset-paginated list.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct PageParams {
    /// Items per page (default 50, at most 200).
    pub page_size: Option<u32>,
    /// The previous page's `next_page_token`.
    pub page_token: Option<String>,
}

impl PageParams {
    /// (page_size, page_token) as the services take them (0 and "" for the defaults).
    pub fn parts(self) -> (u32, String) {
        (
            self.page_size.unwrap_or(0),
            self.page_token.unwrap_or_default(),
        )
    }
}

/// Bags: by type, area, QR prefix, links, bill and creation time.
#[derive(Debug, Deserialize, IntoParams)]
pub struct BagFilter {
    /// parent or child.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = "^(parent|child)?$")]
    pub kind: Option<String>,
    pub area: Option<String>,
    /// QR prefix.
    pub q: Option<String>,
    /// Children: linked or not; parents: holding children or not.
    pub linked: Option<bool>,
    /// Parents on a bill or not.
    pub billed: Option<bool>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

/// A bag type by name ("" for any).
pub fn bag_type(name: &str) -> ApiResult<i32> {
    match name {
        "parent" => Ok(reg::BagType::Parent as i32),
        "child" => Ok(reg::BagType::Child as i32),
        "" => Ok(0),
        _ => Err(bad("type must be parent or child")),
    }
}

impl BagFilter {
    pub fn search(self, page: PageParams) -> ApiResult<reg::SearchBagsRequest> {
        let (created_from, created_to) = range(&self.from, &self.to)?;
        let (page_size, page_token) = page.parts();
        Ok(reg::SearchBagsRequest {
            r#type: bag_type(self.kind.as_deref().unwrap_or(""))?,
            area: self.area.unwrap_or_default(),
            qr_prefix: self.q.unwrap_or_default(),
            linked: self.linked,
            billed: self.billed,
            created_from,
            created_to,
            page_size,
            page_token,
        })
    }
}

/// Bills: by status, id prefix, creation time and creator.
#[derive(Debug, Deserialize, IntoParams)]
pub struct BillFilter {
    /// new, processing, completing, completed or reopening.
    #[param(pattern = "^(new|processing|completing|completed|reopening)?$")]
    pub status: Option<String>,
    /// Bill id prefix (case-insensitive).
    pub q: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// The creator's user id.
    pub created_by: Option<String>,
}

/// A bill status by name ("" for any).
pub fn bill_status(name: &str) -> ApiResult<i32> {
    use billing::BillStatus as S;
    Ok(match name {
        "" => 0,
        "new" => S::New as i32,
        "processing" => S::Processing as i32,
        "completing" => S::Completing as i32,
        "completed" => S::Completed as i32,
        "reopening" => S::Reopening as i32,
        _ => {
            return Err(bad(
                "status must be new, processing, completing, completed or reopening",
            ))
        }
    })
}

impl BillFilter {
    pub fn list(self, page: PageParams) -> ApiResult<billing::ListBillsRequest> {
        let (created_from, created_to) = range(&self.from, &self.to)?;
        let (page_size, page_token) = page.parts();
        Ok(billing::ListBillsRequest {
            status: bill_status(self.status.as_deref().unwrap_or(""))?,
            bill_id_prefix: self.q.unwrap_or_default(),
            created_from,
            created_to,
            created_by: self.created_by.unwrap_or_default(),
            page_size,
            page_token,
        })
    }
}

/// Return tickets: by status and creation time.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReturnTicketFilter {
    /// open, committed or cancelled.
    #[param(pattern = "^(open|committed|cancelled)?$")]
    pub status: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

impl ReturnTicketFilter {
    pub fn list(self, page: PageParams) -> ApiResult<billing::ListReturnTicketsRequest> {
        let (created_from, created_to) = range(&self.from, &self.to)?;
        let (page_size, page_token) = page.parts();
        Ok(billing::ListReturnTicketsRequest {
            status: self.status.unwrap_or_default(),
            page_size,
            page_token,
            created_from,
            created_to,
        })
    }
}

/// Scan events: by user, QR and time.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ScanFilter {
    /// The scanning user's id.
    pub user_id: Option<String>,
    /// Parent or child QR.
    pub qr: Option<String>,
    /// At or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

impl ScanFilter {
    pub fn list(self, page: PageParams) -> ApiResult<scan::ListScansRequest> {
        let (from, to) = range(&self.from, &self.to)?;
        let (page_size, page_token) = page.parts();
        Ok(scan::ListScansRequest {
            user_id: self.user_id.unwrap_or_default(),
            qr: self.qr.unwrap_or_default(),
            from,
            to,
            page_size,
            page_token,
        })
    }
}

/// Audit events: by user, action and time.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditFilter {
    pub user_id: Option<String>,
    /// An event type, or a prefix ending in "." (e.g. `auth.`).
    pub action: Option<String>,
    /// At or after (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Before (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

impl AuditFilter {
    pub fn list(
        self,
        page: PageParams,
    ) -> ApiResult<tracetrack_proto::stats::v1::ListAuditEventsRequest> {
        let (from, to) = range(&self.from, &self.to)?;
        let (page_size, page_token) = page.parts();
        Ok(tracetrack_proto::stats::v1::ListAuditEventsRequest {
            user_id: self.user_id.unwrap_or_default(),
            action: self.action.unwrap_or_default(),
            from,
            to,
            page_size,
            page_token,
        })
    }
}
