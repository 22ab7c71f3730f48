//! The configured areas and product lines, for clients to offer (the gateway's `/api/v1/meta`).

use tonic::Request;
use tracetrack_common::AppResult;
use tracetrack_proto::registry::v1 as pb;

use crate::state::Registry;

impl Registry {
    pub(crate) async fn get_catalogue(
        &self,
        req: Request<pb::GetCatalogueRequest>,
    ) -> AppResult<pb::GetCatalogueResponse> {
        // Any authenticated caller (a user or a service): nothing here is per area or secret.
        self.caller(&req).await?;
        Ok(pb::GetCatalogueResponse {
            areas: self.areas().to_vec(),
            product_lines: self
                .lines()
                .iter()
                .map(|l| pb::ProductLineInfo {
                    name: l.name.clone(),
                    parent_pattern: l.parent_pattern.as_str().to_owned(),
                    capacity: l.capacity,
                    parent_weight_kg: l.parent_weight_kg,
                    child_weight_kg: l.child_weight_kg,
                })
                .collect(),
        })
    }
}
