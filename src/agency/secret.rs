//! The shared linkage secret: where it comes from and how it is held.
//!
//! The secret is read from a file (`--secret-file`) or the `BLOOMLINK_SECRET`
//! environment variable, never from a command-line value. It lives only in a
//! zeroizing buffer, its `Debug` output is redacted, and it is never logged or
//! written anywhere. Agency side only: the hub never holds it.

use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Name of the environment variable that may hold the secret.
pub const SECRET_ENV: &str = "BLOOMLINK_SECRET";

/// The linkage secret, wiped from memory when dropped.
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Wrap bytes (for tests and the demo). Fails on an empty secret.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let bytes = Zeroizing::new(bytes);
        if bytes.is_empty() {
            return Err(Error::Secret(
                "the secret is empty; put the shared linkage key in the file or variable".into(),
            ));
        }
        Ok(Secret(bytes))
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Read the secret from `file` if given, else from `BLOOMLINK_SECRET`.
    ///
    /// One trailing newline (`\n` or `\r\n`) is removed from a file, since
    /// editors add one; no other byte is touched. A file that group or others
    /// can read draws a warning.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        if let Some(path) = file {
            let mut bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
                Error::Secret(format!(
                    "cannot read the secret file {}: {e}",
                    path.display()
                ))
            })?);
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            if bytes.is_empty() {
                return Err(Error::Secret(format!(
                    "the secret file {} is empty; put the shared linkage key in it",
                    path.display()
                )));
            }
            warn_if_loose(path);
            warn_if_short(bytes.len());
            return Ok(Secret(Zeroizing::new(bytes.to_vec())));
        }
        match std::env::var_os(SECRET_ENV) {
            Some(v) => {
                let v = Zeroizing::new(v.into_encoded_bytes());
                let s = Secret::from_bytes(v.to_vec())
                    .map_err(|_| Error::Secret(format!("{SECRET_ENV} is set but empty")))?;
                warn_if_short(s.0.len());
                Ok(s)
            }
            None => Err(Error::Secret(format!(
                "no secret given: use --secret-file FILE or set {SECRET_ENV} (never pass the key itself as an argument)"
            ))),
        }
    }
}

/// Secrets shorter than this draw a warning.
pub const SHORT_SECRET: usize = 16;

/// Warn about a secret of `len` bytes that is short enough to guess: an
/// extract's key check lets whoever holds it test guesses offline.
fn warn_if_short(len: usize) {
    if len < SHORT_SECRET {
        tracing::warn!(
            "the secret is {len} bytes: anyone holding an extract can test guesses at a key this short against its key check; share a random key of {} bytes or more instead (for example `head -c 32 /dev/urandom | base64 > linkage.key`)",
            2 * SHORT_SECRET
        );
    }
}

#[cfg(unix)]
fn warn_if_loose(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "the secret file {} can be read by group or others (mode {:o}); restrict it with `chmod 600`",
            path.display(),
            m.permissions().mode() & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_loose(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from_bytes(b"hunter2".to_vec()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn file_trailing_newline_is_trimmed_and_empty_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, b"abc\r\n").unwrap();
        assert_eq!(Secret::load(Some(&p)).unwrap().expose(), b"abc");
        std::fs::write(&p, b"\n").unwrap();
        let e = Secret::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
