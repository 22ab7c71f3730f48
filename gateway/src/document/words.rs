//! The document's words in English and Hindi. Kept here until the web client's translation
//! catalogue has a Rust accessor; then these come from it.

/// A language the document is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Hi,
}

impl Lang {
    /// `hi` is Hindi; anything else English.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("hi") => Lang::Hi,
            _ => Lang::En,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Hi => "hi",
        }
    }

    pub fn words(self) -> &'static Words {
        match self {
            Lang::En => &EN,
            Lang::Hi => &HI,
        }
    }
}

pub struct Words {
    pub title: &'static str,
    pub label_title: &'static str,
    pub bill: &'static str,
    pub tax_id: &'static str,
    pub depot: &'static str,
    pub dispatched_at: &'static str,
    pub not_dispatched: &'static str,
    pub draft: &'static str,
    pub status: &'static str,
    pub destination: &'static str,
    pub vehicle: &'static str,
    pub driver: &'static str,
    pub driver_phone: &'static str,
    pub seal: &'static str,
    pub description: &'static str,
    pub created_by: &'static str,
    pub sacks: &'static str,
    pub packets: &'static str,
    pub expected_kg: &'static str,
    pub actual_kg: &'static str,
    pub difference_kg: &'static str,
    pub no: &'static str,
    pub sack: &'static str,
    pub product_line: &'static str,
    pub area: &'static str,
    pub total: &'static str,
    pub continued: &'static str,
    pub returns: &'static str,
    pub ticket: &'static str,
    pub returned_at: &'static str,
    pub dispatched: &'static str,
    pub returned: &'static str,
    pub net: &'static str,
    pub dispatcher: &'static str,
    pub driver_sign: &'static str,
    pub receiver: &'static str,
    pub signature: &'static str,
    pub name_date: &'static str,
    pub printed: &'static str,
    /// Before and between the page counters in the page's bottom margin ("Page 2 of 7").
    pub page: &'static str,
    pub of: &'static str,
    pub scan_to_open: &'static str,
    pub statuses: [&'static str; 5],
}

pub static EN: Words = Words {
    title: "Dispatch note",
    label_title: "Dispatch label",
    bill: "Bill",
    tax_id: "GSTIN",
    depot: "Depot",
    dispatched_at: "Dispatched",
    not_dispatched: "not yet dispatched",
    draft: "DRAFT — the bill is not completed",
    status: "Status",
    destination: "Destination",
    vehicle: "Vehicle",
    driver: "Driver",
    driver_phone: "Driver's phone",
    seal: "Seal",
    description: "Description",
    created_by: "Created by",
    sacks: "Sacks",
    packets: "Packets",
    expected_kg: "Expected kg",
    actual_kg: "Actual kg",
    difference_kg: "Difference kg",
    no: "#",
    sack: "Sack",
    product_line: "Line",
    area: "Area",
    total: "Total",
    continued: "continued",
    returns: "Returns",
    ticket: "Ticket",
    returned_at: "Returned",
    dispatched: "Dispatched",
    returned: "Returned",
    net: "Net",
    dispatcher: "Dispatcher",
    driver_sign: "Driver",
    receiver: "Receiver",
    signature: "Signature",
    name_date: "Name and date",
    printed: "Printed",
    page: "Page ",
    of: " of ",
    scan_to_open: "Scan to open the bill",
    statuses: ["new", "loading", "completing", "completed", "reopening"],
};

pub static HI: Words = Words {
    title: "प्रेषण पत्र",
    label_title: "प्रेषण लेबल",
    bill: "बिल",
    tax_id: "जीएसटीआईएन",
    depot: "डिपो",
    dispatched_at: "प्रेषण",
    not_dispatched: "अभी प्रेषित नहीं",
    draft: "मसौदा — बिल पूरा नहीं हुआ है",
    status: "स्थिति",
    destination: "गंतव्य",
    vehicle: "गाड़ी नंबर",
    driver: "चालक",
    driver_phone: "चालक का फ़ोन",
    seal: "सील",
    description: "विवरण",
    created_by: "बनाने वाले",
    sacks: "बोरियाँ",
    packets: "पैकेट",
    expected_kg: "अपेक्षित किग्रा",
    actual_kg: "वास्तविक किग्रा",
    difference_kg: "अंतर किग्रा",
    no: "क्र.",
    sack: "बोरी",
    product_line: "उत्पाद",
    area: "क्षेत्र",
    total: "कुल",
    continued: "जारी",
    returns: "वापसी",
    ticket: "टिकट",
    returned_at: "वापसी का समय",
    dispatched: "भेजा गया",
    returned: "वापस",
    net: "शुद्ध",
    dispatcher: "प्रेषक",
    driver_sign: "चालक",
    receiver: "प्राप्तकर्ता",
    signature: "हस्ताक्षर",
    name_date: "नाम और दिनांक",
    printed: "मुद्रित",
    page: "पृष्ठ ",
    of: " / ",
    scan_to_open: "बिल खोलने के लिए स्कैन करें",
    statuses: ["नया", "लोड हो रहा", "पूरा हो रहा", "पूरा", "फिर खुल रहा"],
};
