//! One translation catalogue for the web client and the documents the server renders: the
//! client's `web/i18n/en.json` and `web/i18n/hi.json`, embedded in the binary and parsed once.
//! A key missing in Hindi falls back to English; a key missing in both is returned as itself (a
//! unit test keeps the two files' keys equal, so neither happens in a release).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::LazyLock;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

const EN_JSON: &str = include_str!("../web/i18n/en.json");
const HI_JSON: &str = include_str!("../web/i18n/hi.json");

type Catalogue = HashMap<String, String>;

fn parse(name: &str, json: &str) -> Catalogue {
    serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("web/i18n/{name}.json is not an object of strings: {e}"))
}

static EN: LazyLock<Catalogue> = LazyLock::new(|| parse("en", EN_JSON));
static HI: LazyLock<Catalogue> = LazyLock::new(|| parse("hi", HI_JSON));

/// A language of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Hi,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Hi];

    /// Its code: `en`, `hi` (the `lang` cookie's value, `?lang=`, `<html lang>`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Hi => "hi",
        }
    }

    /// A language tag (`hi`, `hi-IN`, `en-GB`; any case) as one of ours; `None` for others.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("hi") {
            Some(Lang::Hi)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The language a request asks for: its `lang` cookie (set by the web client when the user
    /// picks a language), else the first of ours in `Accept-Language` by preference, else English.
    pub fn from_headers(headers: &HeaderMap) -> Lang {
        Self::from_cookie(headers)
            .or_else(|| Self::from_accept_language(headers))
            .unwrap_or_default()
    }

    fn from_cookie(headers: &HeaderMap) -> Option<Lang> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == "lang")
            .and_then(|(_, value)| Lang::parse(value.trim_matches('"')))
    }

    fn from_accept_language(headers: &HeaderMap) -> Option<Lang> {
        let mut best: Option<(f32, usize, Lang)> = None;
        let ranges = headers
            .get_all(header::ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        for (i, range) in ranges.enumerate() {
            let mut parts = range.split(';');
            let Some(lang) = parts.next().and_then(Lang::parse) else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q.is_nan() || q <= 0.0 {
                continue;
            }
            // Highest q wins; on a tie, the one listed first.
            if best.is_none_or(|(bq, _, _)| q > bq) {
                best = Some((q, i, lang));
            }
        }
        best.map(|(_, _, lang)| lang)
    }

    fn catalogue(self) -> &'static Catalogue {
        match self {
            Lang::En => &EN,
            Lang::Hi => &HI,
        }
    }
}

/// `Lang` as an extractor: [`Lang::from_headers`]; never refuses.
impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::from_headers(&parts.headers))
    }
}

/// The string `key` in `lang`; English when Hindi lacks it; the key itself when both do.
pub fn t(lang: Lang, key: &str) -> &str {
    lang.catalogue()
        .get(key)
        .or_else(|| EN.get(key))
        .map_or(key, String::as_str)
}

/// [`t`] with its `{name}` placeholders filled in from `vars` (as the client's `t(key, vars)`).
pub fn tf(lang: Lang, key: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(t(lang, key).to_owned(), |s, (name, value)| {
            s.replace(&format!("{{{name}}}"), value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys(c: &Catalogue) -> std::collections::BTreeSet<&str> {
        c.keys().map(String::as_str).collect()
    }

    /// Every key of en.json is in hi.json and every key of hi.json in en.json.
    #[test]
    fn both_languages_have_the_same_keys() {
        let (en, hi) = (keys(&EN), keys(&HI));
        let only_en: Vec<_> = en.difference(&hi).collect();
        let only_hi: Vec<_> = hi.difference(&en).collect();
        assert!(
            only_en.is_empty(),
            "in en.json, not in hi.json: {only_en:?}"
        );
        assert!(
            only_hi.is_empty(),
            "in hi.json, not in en.json: {only_hi:?}"
        );
        assert!(
            en.len() > 100,
            "the catalogue looks truncated: {} keys",
            en.len()
        );
    }

    /// Every stable error code (the table `/api/v1/meta` serves) has plain words in both
    /// languages, so no refusal is shown to the floor as a bare code.
    #[test]
    fn every_error_code_has_words() {
        let missing: Vec<_> = tracetrack_domain::ErrorCode::ALL
            .iter()
            .map(|c| format!("err.{}", c.as_str()))
            .filter(|k| !EN.contains_key(k) || !HI.contains_key(k))
            .collect();
        assert!(missing.is_empty(), "no words for {missing:?}");
    }

    /// No empty strings, and the same `{placeholders}` in both languages.
    #[test]
    fn translations_are_filled_in_with_the_same_placeholders() {
        let holes = |s: &str| {
            let mut v: Vec<String> = s
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_owned()))
                .collect();
            v.sort();
            v
        };
        for (key, en) in EN.iter() {
            let hi = &HI[key];
            assert!(
                !en.trim().is_empty() && !hi.trim().is_empty(),
                "{key} is empty"
            );
            assert_eq!(holes(en), holes(hi), "{key}: placeholders differ");
        }
    }

    #[test]
    fn lookup_falls_back_to_english_then_the_key() {
        assert_eq!(t(Lang::En, "err.bill_full"), "This bill is full.");
        assert_eq!(t(Lang::Hi, "transport"), "परिवहन");
        assert_eq!(t(Lang::Hi, "no.such.key"), "no.such.key");
        assert_eq!(
            tf(Lang::En, "err.on_other_bill", &[("other_bill_id", "B-7")]),
            "This sack is on bill B-7."
        );
    }

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn language_from_cookie_then_accept_language() {
        use header::{ACCEPT_LANGUAGE as AL, COOKIE};
        assert_eq!(Lang::from_headers(&headers(&[])), Lang::En);
        assert_eq!(
            Lang::from_headers(&headers(&[(COOKIE, "tt_session=x; lang=hi")])),
            Lang::Hi
        );
        // The cookie wins over the browser's languages.
        assert_eq!(
            Lang::from_headers(&headers(&[(COOKIE, "lang=en"), (AL, "hi-IN")])),
            Lang::En
        );
        // An unknown cookie value is ignored.
        assert_eq!(
            Lang::from_headers(&headers(&[(COOKIE, "lang=fr"), (AL, "hi")])),
            Lang::Hi
        );
        assert_eq!(
            Lang::from_headers(&headers(&[(AL, "fr-FR, hi-IN;q=0.8, en;q=0.5")])),
            Lang::Hi
        );
        assert_eq!(
            Lang::from_headers(&headers(&[(AL, "en-IN;q=0.9, hi;q=0.4")])),
            Lang::En
        );
        assert_eq!(
            Lang::from_headers(&headers(&[(AL, "hi;q=0, fr")])),
            Lang::En
        );
        assert_eq!(Lang::parse("HI-in"), Some(Lang::Hi));
        assert_eq!(Lang::parse("de"), None);
    }
}
