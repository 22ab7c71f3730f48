//! The writes of a real run, through the services as an admin, each skipping what is already
//! there (so a second run changes nothing and says so):
//! - users: auth's UserAdminService (CreateUser with a random password, then ResetPassword with
//!   another, which sets must_change_password); an existing username is left alone;
//! - bags and links: bag-registry's ImportBags (existing bags are left alone);
//! - bills: billing's CreateBill / AttachParent / CompleteBill; an existing bill only gets the
//!   parents it lacks. If billing cannot be reached, bills are reported as not migrated.

use std::collections::HashSet;
use std::time::Duration;

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use tonic::transport::Channel;
use tonic::Code;
use tracetrack_common::{client, AppError};
use tracetrack_domain::ErrorCode;
use tracetrack_proto::auth::v1 as auth;
use tracetrack_proto::billing::v1 as billing;
use tracetrack_proto::registry::v1::bag_registry_service_client::BagRegistryServiceClient;
use tracetrack_proto::registry::v1::{BagType, ImportBag};

use super::plan::{Plan, PlannedBill};
use super::report::{BagResults, BillResults, Finding, Results, UserResults};
use crate::import::{self, Progress};
use crate::labels::BagKind;
use crate::session::open;

/// Where to write, as whom.
#[derive(Debug, Clone)]
pub struct Targets {
    pub auth_url: String,
    pub registry_url: String,
    /// None: bills are not migrated (reported so).
    pub billing_url: Option<String>,
    /// An admin's session token.
    pub token: String,
    pub batch_size: usize,
}

fn failed(
    table: &'static str,
    legacy_id: i64,
    subject: &str,
    kind: &'static str,
    e: &AppError,
) -> Finding {
    Finding::on(table, legacy_id, subject)
        .code(e.code)
        .failed(kind, e.message.clone())
}

/// A temporary password nobody sees: 24 random letters and digits around a symbol, never
/// containing the username (auth's policy).
pub fn temporary_password(username: &str) -> String {
    let mut rng = rand::thread_rng();
    let lower = username.to_lowercase();
    let mut p = String::new();
    // A 3-character username turns up in 1 of ~10,000 draws; a few tries always suffice.
    for _ in 0..64 {
        p = format!(
            "T{}-{}{}a",
            Alphanumeric.sample_string(&mut rng, 12),
            Alphanumeric.sample_string(&mut rng, 12),
            rng.gen_range(10..100)
        );
        if lower.is_empty() || !p.to_lowercase().contains(&lower) {
            break;
        }
    }
    p
}

/// Runs the writes of `plan`; findings about failed writes are appended to `findings`.
pub async fn apply(
    plan: &Plan,
    targets: &Targets,
    findings: &mut Vec<Finding>,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> anyhow::Result<Results> {
    let mut results = Results {
        users: users(plan, targets, findings).await?,
        ..Default::default()
    };
    results.bags = bags(plan, targets, findings, progress).await?;
    results.bills = bills(plan, targets, findings).await?;
    Ok(results)
}

async fn users(
    plan: &Plan,
    targets: &Targets,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<UserResults> {
    let mut out = UserResults::default();
    if plan.users.is_empty() {
        return Ok(out);
    }
    let token = targets.token.as_str();
    let mut admin = auth::user_admin_service_client::UserAdminServiceClient::new(open(
        &targets.auth_url,
        Duration::from_secs(60),
    )?);
    let mut existing = HashSet::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_users(client::request(
                auth::ListUsersRequest {
                    page_size: 200,
                    page_token: page_token.clone(),
                    include_inactive: true,
                    ..Default::default()
                },
                Some(token),
                None,
            ))
            .await
            .map_err(|s| anyhow::anyhow!("listing users: {}", AppError::from_status(&s)))?
            .into_inner();
        existing.extend(page.users.into_iter().map(|u| u.username.to_lowercase()));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    for u in &plan.users {
        if existing.contains(&u.username.to_lowercase()) {
            out.already_present += 1;
            continue;
        }
        let mut email = u.email.clone();
        let created = loop {
            let r = admin
                .create_user(client::request(
                    auth::CreateUserRequest {
                        username: u.username.clone(),
                        email: email.clone(),
                        password: temporary_password(&u.username),
                        role: u.role as i32,
                        dispatch_area: u.area.clone(),
                    },
                    Some(token),
                    None,
                ))
                .await
                .map_err(|s| AppError::from_status(&s));
            match r {
                Err(e) if e.code == ErrorCode::EmailTaken && !email.is_empty() => {
                    findings.push(
                        Finding::on("user", u.legacy_id, &u.username)
                            .code(ErrorCode::EmailTaken)
                            .repaired(
                                "email_dropped",
                                format!("{email:?} belongs to another TraceTrack user: imported without one"),
                            ),
                    );
                    email.clear();
                }
                other => break other,
            }
        };
        let user = match created {
            Ok(r) => r.into_inner().user.unwrap_or_default(),
            Err(e) if e.code == ErrorCode::UsernameTaken => {
                out.already_present += 1;
                continue;
            }
            Err(e) => {
                out.failed += 1;
                findings.push(failed("user", u.legacy_id, &u.username, "user_failed", &e));
                continue;
            }
        };
        // The creation password was never shown; the reset sets must_change_password.
        let reset = admin
            .reset_password(client::request(
                auth::ResetPasswordRequest {
                    id: user.id.clone(),
                    temporary_password: temporary_password(&u.username),
                },
                Some(token),
                None,
            ))
            .await;
        match reset {
            Ok(_) => out.created += 1,
            Err(s) => {
                out.failed += 1;
                let e = AppError::from_status(&s);
                findings.push(failed(
                    "user",
                    u.legacy_id,
                    &u.username,
                    "password_reset_failed",
                    &e,
                ));
            }
        }
    }
    Ok(out)
}

async fn bags(
    plan: &Plan,
    targets: &Targets,
    findings: &mut Vec<Finding>,
    progress: impl Fn(Progress) + Send + Sync + 'static,
) -> anyhow::Result<BagResults> {
    let mut registry =
        BagRegistryServiceClient::new(open(&targets.registry_url, Duration::from_secs(6 * 3600))?)
            .max_encoding_message_size(64 << 20);
    let records: Vec<ImportBag> = plan
        .bags
        .iter()
        .map(|b| ImportBag {
            qr: b.qr.clone(),
            r#type: match b.kind {
                BagKind::Parent => BagType::Parent as i32,
                BagKind::Child => BagType::Child as i32,
            },
            area: b.area.clone(),
            parent_qr: b.parent.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
        })
        .collect();
    let outcome = import::send_bags(
        &mut registry,
        &targets.token,
        records,
        targets.batch_size,
        progress,
    )
    .await
    .map_err(|e| anyhow::anyhow!("ImportBags failed: {e}"))?;
    for r in &outcome.rejected {
        let legacy_id = plan.bags.get(r.position).map(|b| b.legacy_id).unwrap_or(-1);
        findings.push(
            Finding::on("bag", legacy_id, &r.qr)
                .code(ErrorCode::parse(&r.code))
                .failed(
                    "registry_rejected",
                    format!("refused by bag-registry: {}", r.message),
                ),
        );
    }
    Ok(BagResults {
        counts: outcome.counts,
        rejected: outcome.rejected.len(),
    })
}

type BillingClient = billing::billing_service_client::BillingServiceClient<Channel>;

/// A call that could not reach billing (down, not deployed, or not answering in time).
fn unreachable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unimplemented | Code::DeadlineExceeded
    )
}

async fn bills(
    plan: &Plan,
    targets: &Targets,
    findings: &mut Vec<Finding>,
) -> anyhow::Result<BillResults> {
    let mut out = BillResults::default();
    if plan.bills.is_empty() {
        out.migrated = true;
        return Ok(out);
    }
    let Some(url) = targets.billing_url.as_deref().filter(|u| !u.is_empty()) else {
        out.not_migrated = plan.bills.len();
        return Ok(out);
    };
    let mut client = BillingClient::new(open(url, Duration::from_secs(30))?);
    out.migrated = true;
    for (i, bill) in plan.bills.iter().enumerate() {
        match one_bill(&mut client, &targets.token, bill, &mut out, findings).await {
            Ok(()) => {}
            Err(s) if unreachable(&s) => {
                out.migrated = false;
                out.not_migrated = plan.bills.len() - i;
                findings.push(
                    Finding::on("bill", bill.legacy_id, &bill.bill_id)
                        .code(AppError::from_status(&s).code)
                        .failed(
                            "billing_unreachable",
                            format!(
                                "billing could not be reached at {url}: this bill and the {} after it are not migrated; run again when it can be",
                                plan.bills.len() - i - 1
                            ),
                        ),
                );
                break;
            }
            Err(s) => {
                out.failed += 1;
                let e = AppError::from_status(&s);
                findings.push(failed(
                    "bill",
                    bill.legacy_id,
                    &bill.bill_id,
                    "bill_failed",
                    &e,
                ));
            }
        }
    }
    Ok(out)
}

/// Creates one bill (or finds it), attaches the parents it lacks and completes it when asked.
/// A failed attach is a finding; a failed bill call is the error.
async fn one_bill(
    client: &mut BillingClient,
    token: &str,
    bill: &PlannedBill,
    out: &mut BillResults,
    findings: &mut Vec<Finding>,
) -> Result<(), tonic::Status> {
    let get = |client: &mut BillingClient| {
        let mut c = client.clone();
        let req = client::request(
            billing::GetBillRequest {
                bill_id: bill.bill_id.clone(),
            },
            Some(token),
            None,
        );
        async move { c.get_bill(req).await.map(|r| r.into_inner()) }
    };
    let existing = match get(client).await {
        Ok(r) => Some(r),
        Err(s) if AppError::from_status(&s).code == ErrorCode::BillNotFound => None,
        Err(s) => return Err(s),
    };
    let (mut status, attached): (i32, HashSet<String>) = match existing {
        Some(r) => {
            out.already_present += 1;
            (
                r.bill.map(|b| b.status).unwrap_or_default(),
                r.parents.into_iter().map(|p| p.qr.to_uppercase()).collect(),
            )
        }
        None => {
            let created = client
                .create_bill(client::request(
                    billing::CreateBillRequest {
                        bill_id: bill.bill_id.clone(),
                        capacity: bill.capacity,
                        description: bill.description.clone(),
                        destination: bill.destination.clone(),
                        vehicle_number: bill.vehicle_number.clone(),
                    },
                    Some(token),
                    None,
                ))
                .await;
            match created {
                Ok(r) => {
                    out.created += 1;
                    (
                        r.into_inner().bill.map(|b| b.status).unwrap_or_default(),
                        HashSet::new(),
                    )
                }
                Err(s) if AppError::from_status(&s).code == ErrorCode::BillExists => {
                    let r = get(client).await?;
                    out.already_present += 1;
                    (
                        r.bill.map(|b| b.status).unwrap_or_default(),
                        r.parents.into_iter().map(|p| p.qr.to_uppercase()).collect(),
                    )
                }
                Err(s) => return Err(s),
            }
        }
    };
    let closed = [
        billing::BillStatus::Completing as i32,
        billing::BillStatus::Completed as i32,
        billing::BillStatus::Reopening as i32,
    ];
    let mut on_bill = attached.len();
    for (qr, row) in &bill.parents {
        if attached.contains(qr) {
            out.parents_already_attached += 1;
            continue;
        }
        if closed.contains(&status) {
            // Someone completed it since: leave it as it is.
            findings.push(
                Finding::on("bill_bag", *row, format!("{} <- {qr}", bill.bill_id))
                    .code(ErrorCode::BillCompleted)
                    .failed(
                        "attach_failed",
                        "the bill is already completed in TraceTrack",
                    ),
            );
            out.attach_failed += 1;
            continue;
        }
        let r = client
            .attach_parent(client::request(
                billing::AttachParentRequest {
                    bill_id: bill.bill_id.clone(),
                    parent_qr: qr.clone(),
                },
                Some(token),
                None,
            ))
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                if r.already_attached {
                    out.parents_already_attached += 1;
                } else {
                    out.parents_attached += 1;
                }
                on_bill += 1;
                status = r.bill.map(|b| b.status).unwrap_or(status);
            }
            Err(s) if unreachable(&s) => return Err(s),
            Err(s) => {
                out.attach_failed += 1;
                let e = AppError::from_status(&s);
                findings.push(failed(
                    "bill_bag",
                    *row,
                    &format!("{} <- {qr}", bill.bill_id),
                    "attach_failed",
                    &e,
                ));
            }
        }
    }
    if bill.complete
        && !closed.contains(&status)
        && i32::try_from(on_bill).unwrap_or(i32::MAX) == bill.capacity
    {
        let r = client
            .complete_bill(client::request(
                billing::CompleteBillRequest {
                    bill_id: bill.bill_id.clone(),
                },
                Some(token),
                None,
            ))
            .await;
        match r {
            Ok(_) => out.completed += 1,
            Err(s) if unreachable(&s) => return Err(s),
            Err(s) => {
                let e = AppError::from_status(&s);
                findings.push(failed(
                    "bill",
                    bill.legacy_id,
                    &bill.bill_id,
                    "complete_failed",
                    &e,
                ));
            }
        }
    }
    Ok(())
}
