//! GET /api/v1/exports/epcis: the event store as a GS1 EPCIS 2.0 `EPCISDocument` (JSON-LD),
//! streamed. The events come ready from stats (`ExportEpcisEvents`, page by page); the gateway
//! writes the document's head, the events separated by commas, and its tail as they arrive, so
//! neither side ever holds the whole document. Bag, bill and area URIs
//! (`urn:tracetrack:bag:<QR>`, …) and the event mapping are described in `tracetrack-stats`'
//! `epcis` module and the README.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use tracetrack_domain::ErrorCode;
use tracetrack_proto::stats::v1 as pb;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ctx::Ctx;
use crate::dto::{timestamp, Problem};
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;

/// The JSON-LD context of EPCIS 2.0.
pub const CONTEXT: &str = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";
pub const CONTENT_TYPE: &str = "application/ld+json";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_epcis))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct EpcisParams {
    /// Events at or after this time (RFC 3339); default: the beginning.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Events before this time (RFC 3339); default: when the export starts.
    #[param(format = DateTime)]
    pub to: Option<String>,
}

/// The document's members before its body, in the standard's order.
#[derive(serde::Serialize)]
struct Head<'a> {
    #[serde(rename = "@context")]
    context: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "schemaVersion")]
    schema_version: &'a str,
    #[serde(rename = "creationDate")]
    creation_date: String,
}

/// The document up to the opening of its event list.
fn head(created: chrono::DateTime<chrono::Utc>) -> String {
    let head = serde_json::to_string(&Head {
        context: CONTEXT,
        kind: "EPCISDocument",
        schema_version: "2.0",
        creation_date: created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .unwrap_or_default();
    // `{…}` → `{…,"epcisBody":{"eventList":[`
    format!(
        "{},\"epcisBody\":{{\"eventList\":[",
        head.trim_end_matches('}')
    )
}

const TAIL: &str = "\n]}}\n";

/// EPCIS 2.0 export (admin): bag commissioning (ObjectEvent), packing and unpacking
/// (AggregationEvent ADD `packing` / DELETE `unpacking`), bill attach and detach (TransactionEvent
/// with a `bol` business transaction), oldest first, with event ids that stay the same in every
/// export. Bags are `urn:tracetrack:bag:<percent-encoded QR>`, bills
/// `urn:tracetrack:bill:<percent-encoded bill id>`, areas `urn:tracetrack:area:<area>`. Streamed;
/// a failure after the first byte ends the response early (an incomplete body, never a
/// truncated-but-valid document).
#[utoipa::path(get, path = "/api/v1/exports/epcis", tag = "exports", params(EpcisParams),
    responses(
        (status = 200, content_type = "application/ld+json", description = "An EPCIS 2.0 `EPCISDocument`"),
        (status = 400, body = Problem), (status = 403, body = Problem)))]
async fn export_epcis(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(p): Query<EpcisParams>,
) -> ApiResult<Response> {
    let bad = |m: String| ApiError::new(ErrorCode::InvalidArgument, m);
    let req = pb::ExportEpcisEventsRequest {
        from: timestamp(&p.from).map_err(bad)?,
        to: timestamp(&p.to).map_err(bad)?,
        page_size: 0,
    };
    let upstream = crate::read!(state.0.stats, export_epcis_events, ctx.read(req)).await?;
    let mut first = true;
    let events = upstream.map(move |chunk| {
        let chunk = chunk.map_err(|s| {
            tracing::warn!(error = %s, "EPCIS export interrupted");
            std::io::Error::other(s.message().to_owned())
        })?;
        let mut out = String::with_capacity(chunk.events_json.iter().map(|e| e.len() + 2).sum());
        for e in chunk.events_json {
            out.push_str(if first { "\n" } else { ",\n" });
            first = false;
            out.push_str(&e);
        }
        Ok::<_, std::io::Error>(Bytes::from(out))
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(head(chrono::Utc::now()))) })
        .chain(events)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(TAIL.as_bytes()))
        }));
    let mut resp = Body::from_stream(body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tracetrack-epcis.jsonld\""),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn head_and_tail_make_a_document() {
        let t = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let empty: serde_json::Value =
            serde_json::from_str(&format!("{}{}", head(t), TAIL)).unwrap();
        assert_eq!(empty["type"], "EPCISDocument");
        assert_eq!(empty["@context"], CONTEXT);
        assert_eq!(empty["schemaVersion"], "2.0");
        assert_eq!(empty["creationDate"], "2024-05-01T10:00:00.000Z");
        assert_eq!(empty["epcisBody"]["eventList"], serde_json::json!([]));
        assert!(head(t).starts_with(
            r#"{"@context":"https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld","type":"EPCISDocument","schemaVersion":"2.0","#
        ));
        let two: serde_json::Value =
            serde_json::from_str(&format!("{}\n{{\"a\":1}},\n{{\"b\":2}}{}", head(t), TAIL))
                .unwrap();
        assert_eq!(two["epcisBody"]["eventList"].as_array().unwrap().len(), 2);
    }
}
