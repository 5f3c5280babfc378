//! Entity pseudonyms: `E` + 16 hex characters, an HMAC under the hub's job
//! key of the cluster's sorted members (agency and record id). Reruns on the
//! same inputs with the same job key give the same ids; analysts, who never
//! hold the job key, cannot derive them from Bloom filters or record ids.
//! The job key is hub-held: it is never written to any output but its own file.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Environment variable that may hold the job key.
pub const JOB_KEY_ENV: &str = "BLOOMLINK_JOB_KEY";

/// Where the job key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env,
    Created(PathBuf),
}

/// The hub's job key.
pub struct JobKey {
    key: Zeroizing<Vec<u8>>,
    pub source: KeySource,
}

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobKey(<redacted>, {:?})", self.source)
    }
}

impl JobKey {
    /// Load from `file`, else `BLOOMLINK_JOB_KEY`, else `out_dir/job.key`
    /// (made of 32 random bytes on first use; [`JobKey::new_file`] writes
    /// it, mode 600).
    pub fn load(file: Option<&Path>, out_dir: &Path) -> Result<Self> {
        if let Some(p) = file {
            let k = Zeroizing::new(std::fs::read(p).map_err(|e| Error::read(p, e))?);
            if k.is_empty() {
                return Err(Error::input(p, "the job key file is empty"));
            }
            return Ok(JobKey {
                key: k,
                source: KeySource::File(p.to_path_buf()),
            });
        }
        if let Some(v) = std::env::var_os(JOB_KEY_ENV)
            && !v.is_empty()
        {
            return Ok(JobKey {
                key: Zeroizing::new(v.into_encoded_bytes()),
                source: KeySource::Env,
            });
        }
        let p = out_dir.join("job.key");
        if p.exists() {
            let k = Zeroizing::new(std::fs::read(&p).map_err(|e| Error::read(&p, e))?);
            if k.is_empty() {
                return Err(Error::input(
                    &p,
                    "the job key file is empty; delete it to make a new one",
                ));
            }
            return Ok(JobKey {
                key: k,
                source: KeySource::File(p),
            });
        }
        let mut k = Zeroizing::new(vec![0u8; 32]);
        getrandom::fill(&mut k)
            .map_err(|e| Error::Runtime(format!("no system randomness for the job key: {e}")))?;
        Ok(JobKey {
            key: k,
            source: KeySource::Created(p),
        })
    }

    /// A key made by [`JobKey::load`] (none was given or found), written
    /// to its file but not yet visible there: the caller commits it with
    /// the run's outputs, so that a run that fails leaves no key behind
    /// (only the temporary file's own mode, owner-only, ever holds it).
    pub fn new_file(&self) -> Result<Option<crate::io::Pending>> {
        let KeySource::Created(p) = &self.source else {
            return Ok(None);
        };
        let pending = crate::io::Pending::with_bytes(p, &self.key)?;
        tracing::warn!(
            "created a new job key at {}; keep it to get the same entity ids on reruns",
            p.display()
        );
        Ok(Some(pending))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(b: &[u8]) -> Self {
        JobKey {
            key: Zeroizing::new(b.to_vec()),
            source: KeySource::Env,
        }
    }

    /// The pseudonym of a cluster given its members `(agency, record id)`,
    /// which must be sorted.
    pub fn pseudonym<'a>(&self, members: impl Iterator<Item = (&'a str, &'a str)>) -> String {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        m.update(b"bloomlink entity v1");
        for (a, r) in members {
            m.update(&(a.len() as u64).to_le_bytes());
            m.update(a.as_bytes());
            m.update(&(r.len() as u64).to_le_bytes());
            m.update(r.as_bytes());
        }
        format!("E{}", hex::encode(&m.finalize().into_bytes()[..8]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_depend_on_key_and_members() {
        let k = JobKey::from_bytes(b"k");
        let a = k.pseudonym([("a", "1"), ("b", "2")].into_iter());
        assert_eq!(a.len(), 17);
        assert!(a.starts_with('E'));
        assert_eq!(a, k.pseudonym([("a", "1"), ("b", "2")].into_iter()));
        assert_ne!(a, k.pseudonym([("a", "1")].into_iter()));
        assert_ne!(
            a,
            JobKey::from_bytes(b"l").pseudonym([("a", "1"), ("b", "2")].into_iter())
        );
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(
            k.pseudonym([("ab", "c")].into_iter()),
            k.pseudonym([("a", "bc")].into_iter())
        );
    }
}
