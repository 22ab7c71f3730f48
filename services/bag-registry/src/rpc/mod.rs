//! bag-registry's RPCs, one module per capability; each handler is an inherent `async fn` on
//! [`Registry`] that answers `AppResult<T>`. The tonic service below only calls it and wraps the
//! answer.

mod bags;
mod bills;
mod catalogue;
mod export;
mod import;
mod link_batch;
mod links;

use tonic::Streaming;
use tracetrack_common::export::ExportStream;
use tracetrack_domain::Role;
use tracetrack_proto::registry::v1 as pb;

use crate::state::Registry;

const MANAGERS: &[Role] = &[Role::Admin, Role::Biller];

tracetrack_common::service! {
    Registry: pb::bag_registry_service_server::BagRegistryService {
        type ExportBagsStream = ExportStream<pb::ExportBagsChunk>;
        fn register_bag(pb::RegisterBagRequest) -> pb::RegisterBagResponse;
        fn get_bag(pb::GetBagRequest) -> pb::GetBagResponse;
        fn get_bags(pb::GetBagsRequest) -> pb::GetBagsResponse;
        fn search_bags(pb::SearchBagsRequest) -> pb::SearchBagsResponse;
        fn list_children(pb::ListChildrenRequest) -> pb::ListChildrenResponse;
        fn unlink_child(pb::UnlinkChildRequest) -> pb::UnlinkChildResponse;
        fn move_child(pb::MoveChildRequest) -> pb::MoveChildResponse;
        fn delete_bag(pb::DeleteBagRequest) -> pb::DeleteBagResponse;
        fn import_bags(Streaming<pb::ImportBagsRequest>) -> pb::ImportBagsResponse;
        fn export_bags(pb::ExportBagsRequest) -> Self::ExportBagsStream;
        fn get_catalogue(pb::GetCatalogueRequest) -> pb::GetCatalogueResponse;
        fn ensure_parent(pb::EnsureParentRequest) -> pb::EnsureParentResponse;
        fn link_child(pb::LinkChildRequest) -> pb::LinkChildResponse;
        fn undo_last_link(pb::UndoLastLinkRequest) -> pb::UndoLastLinkResponse;
        fn claim_parent(pb::ClaimParentRequest) -> pb::ClaimParentResponse;
        fn claim_parents(pb::ClaimParentsRequest) -> pb::ClaimParentsResponse;
        fn release_parent(pb::ReleaseParentRequest) -> pb::ReleaseParentResponse;
        fn freeze_parents(pb::FreezeParentsRequest) -> pb::FreezeParentsResponse;
        fn unfreeze_parents(pb::UnfreezeParentsRequest) -> pb::UnfreezeParentsResponse;
        fn get_bill_figures(pb::GetBillFiguresRequest) -> pb::GetBillFiguresResponse;
        fn return_parent(pb::ReturnParentRequest) -> pb::ReturnParentResponse;
    }
}
