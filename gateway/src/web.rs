//! The web client: native ES modules and CSS, embedded in the binary (nothing loaded from the
//! internet, no build step), served at `/`; its service worker at `/sw.js` (scope `/`) and its
//! web app manifest at `/manifest.webmanifest`. The translation catalogue (`web/i18n/*.json`) is
//! served to the client and read by the server too (`crate::i18n`).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

const JS: &str = "text/javascript; charset=utf-8";
const JSON: &str = "application/json";

/// Every file of `gateway/web`: the path it is served at, its body and its content type.
macro_rules! assets {
    ($( $path:literal => $file:literal, $ct:expr; )*) => {
        pub const ASSETS: &[(&str, &str, &str)] = &[ $( ($path, include_str!(concat!("../web/", $file)), $ct), )* ];
        #[cfg(test)]
        const FILES: &[&str] = &[ $( $file, )* ];
    };
}

assets! {
    "/" => "index.html", "text/html; charset=utf-8";
    "/sw.js" => "sw.js", JS;
    "/manifest.webmanifest" => "manifest.webmanifest", "application/manifest+json";
    "/assets/app.css" => "app.css", "text/css; charset=utf-8";
    "/assets/icon.svg" => "icon.svg", "image/svg+xml";
    "/assets/main.js" => "main.js", JS;
    "/assets/router.js" => "router.js", JS;
    "/assets/store.js" => "store.js", JS;
    "/assets/api.js" => "api.js", JS;
    "/assets/queue.js" => "queue.js", JS;
    "/assets/html.js" => "html.js", JS;
    "/assets/i18n.js" => "i18n.js", JS;
    "/assets/i18n/en.json" => "i18n/en.json", JSON;
    "/assets/i18n/hi.json" => "i18n/hi.json", JSON;
    "/assets/ui.js" => "ui.js", JS;
    "/assets/tones.js" => "tones.js", JS;
    "/assets/pages/account.js" => "pages/account.js", JS;
    "/assets/pages/audit.js" => "pages/audit.js", JS;
    "/assets/pages/bags.js" => "pages/bags.js", JS;
    "/assets/pages/bills.js" => "pages/bills.js", JS;
    "/assets/pages/dashboard.js" => "pages/dashboard.js", JS;
    "/assets/pages/data.js" => "pages/data.js", JS;
    "/assets/pages/more.js" => "pages/more.js", JS;
    "/assets/pages/scan.js" => "pages/scan.js", JS;
    "/assets/pages/users.js" => "pages/users.js", JS;
    "/assets/pages/api_keys.js" => "pages/api_keys.js", JS;
    "/assets/pages/reports.js" => "pages/reports.js", JS;
    "/assets/pages/returns.js" => "pages/returns.js", JS;
    "/assets/pages/returns_bill.js" => "pages/returns_bill.js", JS;
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small and embedded: revalidate every load so a new binary's assets are picked up at once
    // (the service worker keeps its own copy for when there is no network).
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub fn router() -> Router<AppState> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, body, content_type)| {
            router.route(path, get(move || async move { asset(body, content_type) }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in gateway/web is served, and the service worker keeps every one of them.
    #[test]
    fn every_web_file_is_served_and_kept_by_the_service_worker() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        for entry in walk(&dir) {
            let rel = entry
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            on_disk.push(rel);
        }
        on_disk.sort();
        let mut served: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served, "gateway/web and web.rs's table differ");
        let sw = ASSETS.iter().find(|a| a.0 == "/sw.js").unwrap().1;
        for (path, _, _) in ASSETS.iter().filter(|a| a.0 != "/sw.js") {
            assert!(
                sw.contains(&format!("\"{path}\"")),
                "sw.js does not keep {path}"
            );
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
