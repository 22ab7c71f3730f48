//! TLS to Postgres and Redis (rustls on ring; the webpki roots plus a CA file from
//! configuration; no OpenSSL): what a refused handshake means, in words an operator can act on.
//! Both drivers surface a refused certificate as an I/O error carrying rustls' own message
//! (`invalid peer certificate: …`), a few layers down and not always as a `source`; [`refusal`]
//! reads the whole chain and says which check failed and what to look at.

use std::error::Error as StdError;

/// When `err`, or an error it wraps, is a TLS handshake refused by our side (the server's
/// certificate is not trusted, or not for the host name we dialled), says so and what to check.
/// `what` names the server ("the database", "Redis"), `ca_setting` the setting that names the
/// CA file (`database.ca_file`).
pub fn refusal(err: &(dyn StdError + 'static), what: &str, ca_setting: &str) -> Option<String> {
    let text = chain_text(err);
    let cert = text
        .split("invalid peer certificate: ")
        .nth(1)
        .map(|rest| rest.lines().next().unwrap_or(rest).trim().to_owned())?;
    let hint = if cert.contains("UnknownIssuer") || cert.contains("BadSignature") {
        format!(
            "{what}'s certificate is not signed by a CA we trust: put the CA that issued it \
             (RDS: the region's bundle) in the file {ca_setting} names, or check that it is the \
             right file"
        )
    } else if cert.contains("not valid for name") || cert.contains("NotValidForName") {
        format!(
            "{what}'s certificate does not name the host in the URL (verify-full checks the host \
             name): connect by a name the certificate carries (RDS: the instance's endpoint, not \
             an IP address or a CNAME of yours), or use sslmode=verify-ca"
        )
    } else if cert.contains("expired") || cert.contains("Expired") || cert.contains("not valid yet")
    {
        format!(
            "{what}'s certificate is expired or not yet valid (or this machine's clock is wrong)"
        )
    } else {
        format!("{what}'s certificate was refused")
    };
    Some(format!("TLS: {hint} (invalid peer certificate: {cert})"))
}

/// Every message in `err`'s chain, I/O errors' inner errors included (they are not `source`s).
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e.to_string());
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            out.push(chain_text(inner));
        }
        next = e.source();
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(message: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
    }

    #[test]
    fn names_the_check_that_refused_the_certificate() {
        let wrapped =
            anyhow::Error::new(io("invalid peer certificate: UnknownIssuer")).context("connecting");
        let said = refusal(wrapped.as_ref(), "the database", "database.ca_file").unwrap();
        assert!(said.contains("not signed by a CA we trust"), "{said}");
        assert!(said.contains("database.ca_file"), "{said}");
        let name = io(
            "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; \
                       certificate is only valid for DnsName(\"localhost\")",
        );
        let said = refusal(&name, "Redis", "redis.ca_file").unwrap();
        assert!(said.contains("does not name the host"), "{said}");
        assert!(said.contains("127.0.0.1"), "{said}");
        assert!(refusal(&io("connection refused"), "Redis", "redis.ca_file").is_none());
    }
}
