//! Outgoing mail over SMTP (lettre on tokio, rustls: no OpenSSL), shared by every service that
//! sends mail (stats' end-of-day report; auth's password-reset mail later).
//!
//! One `smtp` configuration section ([`SmtpSettings`]); an empty host means "no SMTP": the
//! [`Mailer`] is then absent and callers only preview what they would send. Links in mail are made
//! from a configured public base URL ([`link`]), never from a request's Host header.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment as LettreAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// How the connection is secured: `opportunistic` (STARTTLS when the server offers it, the
/// default), `required` (STARTTLS or fail), `wrapper` (TLS from the first byte, port 465),
/// `none` (plain text: a relay on loopback only).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    #[default]
    Opportunistic,
    Required,
    Wrapper,
    None,
}

/// The `smtp` section (`TRACETRACK_SMTP__HOST`, `…__PORT`, `…__USERNAME`, `…__PASSWORD` (a
/// secret), `…__FROM`, `…__STARTTLS`, `…__TIMEOUT_MS`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    /// Empty: no SMTP server (mail is only previewed).
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Option<SecretString>,
    /// The sender, e.g. `TraceTrack <reports@example.com>`.
    pub from: String,
    pub starttls: StartTls,
    /// Deadline of one SMTP conversation.
    pub timeout_ms: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            username: String::new(),
            password: None,
            from: "TraceTrack <tracetrack@localhost>".into(),
            starttls: StartTls::Opportunistic,
            timeout_ms: 15_000,
        }
    }
}

/// One attached file.
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One message: a plain-text and an HTML body (alternatives), attachments, and a Message-ID the
/// caller chose (deterministic ids let recipients' servers drop a duplicate).
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<Attachment>,
    /// Without angle brackets, e.g. `eod-2026-12-05@tracetrack.example`.
    pub message_id: String,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Bad configuration or message (an address that does not parse): retrying will not help.
    #[error("mail cannot be built: {0}")]
    Invalid(String),
    /// The server refused or could not be reached; `permanent` when it said 5xx.
    #[error("SMTP: {message}")]
    Smtp { message: String, permanent: bool },
}

/// An SMTP client for one configured server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `None` when no host is configured.
    pub fn new(settings: &SmtpSettings) -> Result<Option<Self>, MailError> {
        if settings.host.trim().is_empty() {
            return Ok(None);
        }
        let host = settings.host.trim().to_owned();
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| MailError::Invalid(format!("smtp.from: {e}")))?;
        let tls = || {
            TlsParameters::new(host.clone()).map_err(|e| MailError::Invalid(format!("TLS: {e}")))
        };
        let tls = match settings.starttls {
            StartTls::Opportunistic => Tls::Opportunistic(tls()?),
            StartTls::Required => Tls::Required(tls()?),
            StartTls::Wrapper => Tls::Wrapper(tls()?),
            StartTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(Duration::from_millis(settings.timeout_ms.max(1))));
        if !settings.username.is_empty() {
            let password = settings
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(settings.username.clone(), password));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }

    /// Sends `mail` to every recipient in one SMTP transaction.
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = build(&self.from, mail)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| MailError::Smtp {
                message: e.to_string(),
                permanent: e.is_permanent(),
            })
    }
}

fn build(from: &Mailbox, mail: &Mail) -> Result<Message, MailError> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(mail.subject.clone())
        .message_id(Some(format!("<{}>", mail.message_id)));
    if mail.to.is_empty() {
        return Err(MailError::Invalid("no recipients".into()));
    }
    for to in &mail.to {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailError::Invalid(format!("recipient {to:?}: {e}")))?;
        builder = builder.to(to);
    }
    let body = MultiPart::alternative()
        .singlepart(SinglePart::plain(mail.text.clone()))
        .singlepart(SinglePart::html(mail.html.clone()));
    let mut mixed = MultiPart::mixed().multipart(body);
    for a in &mail.attachments {
        let ct = ContentType::parse(&a.content_type)
            .map_err(|e| MailError::Invalid(format!("content type {}: {e}", a.content_type)))?;
        mixed =
            mixed.singlepart(LettreAttachment::new(a.filename.clone()).body(a.body.clone(), ct));
    }
    builder
        .multipart(mixed)
        .map_err(|e| MailError::Invalid(e.to_string()))
}

/// A link for mail: `path` under the configured public base URL (never a request's Host).
pub fn link(public_base_url: &str, path: &str) -> String {
    format!(
        "{}/{}",
        public_base_url.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_host_is_no_mailer() {
        assert!(Mailer::new(&SmtpSettings::default())
            .map(|m| m.is_none())
            .unwrap_or(false));
    }

    #[test]
    fn links_join_the_base_and_the_path() {
        assert_eq!(
            link("https://tt.example/", "/#/reports"),
            "https://tt.example/#/reports"
        );
    }
}
