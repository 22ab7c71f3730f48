//! The document's words, from the one translation catalogue (`web/i18n/{en,hi}.json`, keys
//! `doc_*`, and the web client's own words for bill statuses).

use crate::i18n::t;
pub use crate::i18n::Lang;

macro_rules! words {
    ($($field:ident),* $(,)?) => {
        /// Every word a document prints, in one language.
        pub struct Words {
            $(pub $field: &'static str,)*
            /// new, processing, completing, completed, reopening.
            pub statuses: [&'static str; 5],
        }

        impl Words {
            pub fn of(lang: Lang) -> Self {
                Self {
                    $($field: t(lang, concat!("doc_", stringify!($field))),)*
                    statuses: [
                        t(lang, "bill_new"),
                        t(lang, "bill_processing"),
                        t(lang, "bill_completing"),
                        t(lang, "bill_completed"),
                        t(lang, "bill_reopening"),
                    ],
                }
            }
        }
    };
}

words!(
    title,
    label_title,
    bill,
    tax_id,
    depot,
    dispatched_at,
    not_dispatched,
    draft,
    status,
    destination,
    vehicle,
    driver,
    driver_phone,
    seal,
    description,
    created_by,
    sacks,
    packets,
    expected_kg,
    actual_kg,
    difference_kg,
    no,
    sack,
    product_line,
    area,
    total,
    returns,
    ticket,
    returned_at,
    dispatched,
    returned,
    net,
    dispatcher,
    driver_sign,
    receiver,
    signature,
    name_date,
    printed,
    // Before and between the page counters in the bottom margin ("Page 2 of 7").
    page,
    of,
    scan_to_open,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every word is in the catalogue (a missing key would print as itself).
    #[test]
    fn every_word_is_translated() {
        for lang in Lang::ALL {
            let w = Words::of(lang);
            for s in [
                w.title,
                w.page,
                w.of,
                w.receiver,
                w.scan_to_open,
                w.statuses[4],
            ] {
                assert!(!s.starts_with("doc_") && !s.starts_with("bill_"), "{s}");
            }
        }
        assert_eq!(Words::of(Lang::Hi).title, "प्रेषण पत्र");
    }
}
