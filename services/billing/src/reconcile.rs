//! Billing against bag-registry after one of them was restored from a backup without the other
//! (docs/operations.md § 6): which parents the registry says are on a bill that billing does not
//! have attached, which billing has attached that the registry does not say are on that bill, and
//! which parents' frozen flag disagrees with their bill's status. `tracetrack-billing reconcile`
//! prints them; with `--repair` it asks bag-registry (billing's own calls, with its service token)
//! to release the parents billing does not have, and to claim again the confirmed ones it has.
//!
//! Each side is read with its own database URL (billing's configured one, the registry's given
//! on the command line), so no role needs rights on the other's schema.

use sqlx::PgPool;

use crate::store::reconcile as store;

/// One disagreement between the two services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The registry says the parent is on `bill`; billing has no such attachment (billing was
    /// restored to before the attach, or to before the bill existed: `bill_known` says which).
    RegistryOnly {
        parent_qr: String,
        bill_id: String,
        bill_known: bool,
    },
    /// Billing has the parent attached to `bill` (in `state`); the registry has it on no bill
    /// (it was restored to before the claim, or the parent is gone).
    BillingOnly {
        parent_qr: String,
        bill_id: String,
        state: String,
    },
    /// Both have the parent, on different bills.
    OtherBill {
        parent_qr: String,
        registry_bill: String,
        billing_bill: String,
    },
    /// Same bill, but the registry's frozen flag is not "the bill is completed".
    Frozen {
        parent_qr: String,
        bill_id: String,
        frozen: bool,
        bill_status: String,
    },
}

impl std::fmt::Display for Difference {
    /// One tab-separated line: kind, parent, then what each side says.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RegistryOnly {
                parent_qr,
                bill_id,
                bill_known,
            } => {
                let why = if *bill_known {
                    "billing has the bill without this parent"
                } else {
                    "billing has no such bill"
                };
                write!(f, "registry_only\t{parent_qr}\tregistry:{bill_id}\tbilling:-\t{why}")
            }
            Self::BillingOnly {
                parent_qr,
                bill_id,
                state,
            } => write!(
                f,
                "billing_only\t{parent_qr}\tregistry:-\tbilling:{bill_id}\tattachment {state}"
            ),
            Self::OtherBill {
                parent_qr,
                registry_bill,
                billing_bill,
            } => write!(
                f,
                "other_bill\t{parent_qr}\tregistry:{registry_bill}\tbilling:{billing_bill}\t"
            ),
            Self::Frozen {
                parent_qr,
                bill_id,
                frozen,
                bill_status,
            } => write!(
                f,
                "frozen\t{parent_qr}\tregistry:{bill_id}\tbilling:{bill_id}\tfrozen={frozen}, bill {bill_status}"
            ),
        }
    }
}

/// A small pool on the registry's database (its runtime role's URL is enough: it only reads).
pub use crate::store::reconcile::registry_pool;

/// Every difference, ordered by parent. Attachments still `pending` or `detaching` are sagas in
/// flight that the sweeper settles: they are reported with their state, so run it again after a
/// minute before acting on them.
pub async fn differences(billing: &PgPool, registry: &PgPool) -> anyhow::Result<Vec<Difference>> {
    let on_bills = store::registry_parents_on_bills(registry).await?;
    // Frozen parents on no bill are wrong too (a restored registry can have them).
    let frozen_free = store::registry_frozen_free(registry).await?;
    let attached = store::attachments_with_status(billing).await?;
    let bills = store::bill_ids(billing).await?;

    let mut out = Vec::new();
    for (qr, (bill, frozen)) in &on_bills {
        match attached.get(qr) {
            None => out.push(Difference::RegistryOnly {
                parent_qr: qr.clone(),
                bill_id: bill.clone(),
                bill_known: bills.contains(bill),
            }),
            Some((other, _, _)) if other != bill => out.push(Difference::OtherBill {
                parent_qr: qr.clone(),
                registry_bill: bill.clone(),
                billing_bill: other.clone(),
            }),
            Some((_, _, status)) if *frozen != (status == "completed") => {
                out.push(Difference::Frozen {
                    parent_qr: qr.clone(),
                    bill_id: bill.clone(),
                    frozen: *frozen,
                    bill_status: status.clone(),
                })
            }
            Some(_) => {}
        }
    }
    for (qr, (bill, state, _)) in &attached {
        if !on_bills.contains_key(qr) {
            out.push(Difference::BillingOnly {
                parent_qr: qr.clone(),
                bill_id: bill.clone(),
                state: state.clone(),
            });
        }
    }
    for qr in frozen_free {
        out.push(Difference::Frozen {
            parent_qr: qr,
            bill_id: String::new(),
            frozen: true,
            bill_status: "none".into(),
        });
    }
    out.sort_by(|a, b| parent(a).cmp(parent(b)));
    Ok(out)
}

fn parent(d: &Difference) -> &str {
    match d {
        Difference::RegistryOnly { parent_qr, .. }
        | Difference::BillingOnly { parent_qr, .. }
        | Difference::OtherBill { parent_qr, .. }
        | Difference::Frozen { parent_qr, .. } => parent_qr,
    }
}

/// What `--repair` did with one difference.
#[derive(Debug)]
pub struct Repaired {
    pub difference: Difference,
    /// "released", "claimed", "frozen", "unfrozen", or why it was left for a person.
    pub outcome: String,
}

/// Makes bag-registry agree with billing, billing being the record of what is on a bill: a
/// parent billing does not have is released (a biller attaches it again if it belongs there), a
/// confirmed attachment the registry lost is claimed again, and the frozen flag follows the
/// bill's status. A parent on another bill, an unsettled attachment, or a refusal is left and
/// said why. Each call is billing's own (its service token), so the registry's rules apply.
pub async fn repair(
    registry: &crate::state::RegistryClient,
    differences: &[Difference],
) -> Vec<Repaired> {
    use tracetrack_common::client;
    use tracetrack_proto::registry::v1 as reg;
    let mut out = Vec::new();
    for d in differences {
        let mut registry = registry.clone();
        let outcome = match d {
            Difference::RegistryOnly {
                parent_qr, bill_id, ..
            } => {
                let req = reg::ReleaseParentRequest {
                    parent_qr: parent_qr.clone(),
                    bill_id: bill_id.clone(),
                };
                match registry
                    .release_parent(client::request(req, None, None))
                    .await
                {
                    Ok(r) if r.get_ref().released => "released".to_owned(),
                    Ok(_) => "left: not on that bill any more".to_owned(),
                    Err(s) => format!("left: {}", crate::registry::registry_error(&s).message),
                }
            }
            Difference::BillingOnly {
                parent_qr,
                bill_id,
                state,
            } if state == "confirmed" => {
                let req = reg::ClaimParentRequest {
                    parent_qr: parent_qr.clone(),
                    bill_id: bill_id.clone(),
                };
                match registry
                    .claim_parent(client::request(req, None, None))
                    .await
                {
                    Ok(_) => "claimed".to_owned(),
                    Err(s) => format!("left: {}", crate::registry::registry_error(&s).message),
                }
            }
            Difference::BillingOnly { state, .. } => {
                format!("left: attachment {state}, the sweeper settles it")
            }
            Difference::OtherBill { .. } => {
                "left: on two bills; detach it from the wrong one by hand".to_owned()
            }
            Difference::Frozen {
                bill_id,
                bill_status,
                ..
            } if !bill_id.is_empty() => {
                let bill_id = bill_id.clone();
                let r = if bill_status == "completed" {
                    registry
                        .freeze_parents(client::request(
                            reg::FreezeParentsRequest { bill_id },
                            None,
                            None,
                        ))
                        .await
                        .map(|_| "frozen")
                } else {
                    registry
                        .unfreeze_parents(client::request(
                            reg::UnfreezeParentsRequest { bill_id },
                            None,
                            None,
                        ))
                        .await
                        .map(|_| "unfrozen")
                };
                match r {
                    Ok(what) => what.to_owned(),
                    Err(s) => format!("left: {}", crate::registry::registry_error(&s).message),
                }
            }
            Difference::Frozen { .. } => "left: frozen on no bill".to_owned(),
        };
        out.push(Repaired {
            difference: d.clone(),
            outcome,
        });
    }
    out
}
