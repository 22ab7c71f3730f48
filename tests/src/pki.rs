//! A throw-away PKI for the TLS tests (tls.rs, grpc_tls.rs), made with the openssl command-line
//! tool (`scripts/stack.sh` installs it; the binaries under test hold no OpenSSL: rustls).

use std::path::Path;
use std::process::Command;

/// Runs `openssl args…` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command-line tool must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An EC P-256 key, unencrypted.
const EC: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A throw-away CA called `name` in `dir` (`ca.crt`, `ca.key`), valid two days.
pub fn make_ca(dir: &Path, name: &str) {
    let subject = format!("/CN={name}");
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args);
}

/// A server certificate for `subject_alt_names` (e.g. `DNS:localhost,IP:127.0.0.1`) signed by
/// `dir`'s CA, in `<name>.crt` / `<name>.key` (each call a new key and serial).
pub fn make_leaf(dir: &Path, name: &str, subject_alt_names: &str) {
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    let mut args = vec!["req"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName={subject_alt_names}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("writing the certificate's extensions");
    let args = [
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "2",
        "-extfile",
        &ext,
    ];
    openssl(dir, &args);
}
