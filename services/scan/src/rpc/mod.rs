//! scan's RPCs, one module per capability: the scanning workflow (ScanParent, ScanChild,
//! UndoLastChild, each a call to bag-registry plus one record in the scan log), reading the log
//! (ListScans, ExportScans) and its live feed (WatchScans). Each handler is an inherent
//! `async fn` on [`Scan`] that answers `AppResult<T>`; the tonic service below only calls it.

mod reading;
mod scanning;
mod watch;

use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracetrack_common::export::ExportStream;
use tracetrack_proto::scan::v1 as pb;

use crate::state::Scan;

tracetrack_common::service! {
    Scan: pb::scan_service_server::ScanService {
        type ExportScansStream = ExportStream<pb::ExportScansChunk>;
        type WatchScansStream = ReceiverStream<Result<pb::ScanEvent, Status>>;
        fn scan_parent(pb::ScanParentRequest) -> pb::ScanParentResponse;
        fn scan_child(pb::ScanChildRequest) -> pb::ScanChildResponse;
        fn undo_last_child(pb::UndoLastChildRequest) -> pb::UndoLastChildResponse;
        fn list_scans(pb::ListScansRequest) -> pb::ListScansResponse;
        fn export_scans(pb::ExportScansRequest) -> Self::ExportScansStream;
        fn watch_scans(pb::WatchScansRequest) -> Self::WatchScansStream;
    }
}
