//! Keyed hashing: key derivation and token → bit positions.
//!
//! Native mode derives one key per use (CLK per field, field filter per
//! field, blocking key per pass, key check) from the secret with HKDF-SHA256
//! and distinct labels, and double-hashes tokens with HMAC-SHA256:
//! `index_j = (h1 + j·h2) mod m`. clkhash mode reproduces clkhash 0.18
//! exactly (HKDF key pairs by feature position; doubleHash with HMAC-SHA1 and
//! HMAC-MD5, or keyed BLAKE2b). Keyed MAC states are built once and cloned per
//! token. Agency side only: the keys never leave this module's types.

use blake2::Blake2bMac512;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::schema::Kdf;
use super::secret::Secret;
use crate::error::{Error, Result};

/// HKDF salt of native key derivation (versioned so a future scheme differs).
const NATIVE_SALT: &[u8] = b"bloomlink/v1";

/// Derive a 32-byte native key for a use label, e.g. `clk/field/surname`.
pub fn derive_key(secret: &Secret, label: &str) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(NATIVE_SALT), secret.expose());
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(label.as_bytes(), okm.as_mut())
        .expect("32 bytes is a valid HKDF length");
    okm
}

/// The key check value: first 8 bytes, hex, of
/// HMAC-SHA256(derived key, "bloomlink key check"). Equal key checks mean
/// equal secrets; the value reveals nothing usable about the key.
pub fn key_check(secret: &Secret) -> String {
    let key = derive_key(secret, "key-check");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_ref()).expect("any key length");
    mac.update(b"bloomlink key check");
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// clkhash's key list: HKDF-SHA256 output split into `2 × num_features`
/// keys of `key_size` bytes.
pub fn clkhash_keys(secret: &Secret, kdf: &Kdf) -> Result<Zeroizing<Vec<u8>>> {
    let salt = kdf
        .salt_hex
        .as_ref()
        .map(|h| hex::decode(h).expect("schema stores valid hex"));
    let info = kdf
        .info_hex
        .as_ref()
        .map(|h| hex::decode(h).expect("schema stores valid hex"))
        .unwrap_or_default();
    let hk = Hkdf::<Sha256>::new(salt.as_deref(), secret.expose());
    let mut okm = Zeroizing::new(vec![0u8; 2 * kdf.num_features * kdf.key_size]);
    hk.expand(&info, &mut okm).map_err(|_| {
        Error::Runtime("clkhash key derivation: too many features for HKDF-SHA256".into())
    })?;
    Ok(okm)
}

/// A keyed hash from tokens to bit positions.
#[derive(Clone)]
pub enum TokenHasher {
    /// Native HMAC-SHA256 double hashing.
    Sha256(Hmac<Sha256>),
    /// clkhash doubleHash.
    Double {
        sha1: Hmac<Sha1>,
        md5: Hmac<Md5>,
        prevent_singularity: bool,
    },
    /// clkhash blakeHash (the key is the first of the feature's two keys).
    Blake(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHasher(<keyed>)")
    }
}

/// The hash of one token, from which any number of bit positions follow.
#[derive(Clone, Debug)]
pub enum Hashed {
    /// Double hashing: `index_j = (h1 + j·h2) mod l`.
    Pair(u64, u64),
    /// BLAKE2b words: `index_j = words[j] mod l`.
    Words(Vec<u16>),
}

impl Hashed {
    /// Whether this hash yields at least `k` positions.
    #[inline]
    pub fn covers(&self, k: usize) -> bool {
        match self {
            Hashed::Pair(..) => true,
            Hashed::Words(w) => w.len() >= k,
        }
    }

    /// Position `j` in a filter of `l` bits.
    #[inline]
    pub fn index(&self, j: usize, l: u64) -> usize {
        match self {
            Hashed::Pair(h1, h2) => {
                let x = h1 + (j as u64) * h2;
                (if l.is_power_of_two() {
                    x & (l - 1)
                } else {
                    x % l
                }) as usize
            }
            Hashed::Words(w) => (w[j] as u64 % l) as usize,
        }
    }
}

/// A big-endian byte string modulo `l`.
#[inline]
fn be_mod(bytes: &[u8], l: u64) -> u64 {
    bytes
        .iter()
        .fold(0u64, |acc, &b| ((acc << 8) | b as u64) % l)
}

impl TokenHasher {
    /// Native hasher under a derived key.
    pub fn native(key: &[u8]) -> Self {
        TokenHasher::Sha256(<Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length"))
    }

    /// clkhash doubleHash under the feature's key pair.
    pub fn double(k1: &[u8], k2: &[u8], prevent_singularity: bool) -> Self {
        TokenHasher::Double {
            sha1: <Hmac<Sha1> as KeyInit>::new_from_slice(k1).expect("any key length"),
            md5: <Hmac<Md5> as KeyInit>::new_from_slice(k2).expect("any key length"),
            prevent_singularity,
        }
    }

    /// clkhash blakeHash under the feature's first key.
    pub fn blake(k1: &[u8]) -> Result<Self> {
        if k1.is_empty() || k1.len() > 64 {
            return Err(Error::Runtime(
                "blakeHash needs a key size from 1 to 64 bytes (clkConfig.kdf.keySize)".into(),
            ));
        }
        Ok(TokenHasher::Blake(Zeroizing::new(k1.to_vec())))
    }

    /// Hash `token` for a filter of `l` bits, giving at least `k` positions.
    pub fn hash(&self, token: &[u8], l: u64, k: usize) -> Hashed {
        match self {
            TokenHasher::Sha256(base) => {
                let mut m = base.clone();
                m.update(token);
                let d = m.finalize().into_bytes();
                let h1 = u64::from_be_bytes(d[0..8].try_into().expect("8 bytes")) % l;
                let mut h2 = u64::from_be_bytes(d[8..16].try_into().expect("8 bytes")) % l;
                // An odd step visits k distinct positions in a power-of-two filter.
                if l.is_power_of_two() {
                    h2 |= 1;
                } else if h2 == 0 {
                    h2 = 1;
                }
                Hashed::Pair(h1, h2)
            }
            TokenHasher::Double {
                sha1,
                md5,
                prevent_singularity,
            } => {
                let mut s = sha1.clone();
                s.update(token);
                let h1 = be_mod(&s.finalize().into_bytes(), l);
                let mut m = md5.clone();
                m.update(token);
                let mut h2 = be_mod(&m.finalize().into_bytes(), l);
                if *prevent_singularity {
                    let mut i: u32 = 0;
                    while h2 == 0 {
                        let mut m = md5.clone();
                        m.update(token);
                        let c = char::from_u32(i).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        m.update(c.encode_utf8(&mut buf).as_bytes());
                        h2 = be_mod(&m.finalize().into_bytes(), l);
                        i += 1;
                    }
                }
                Hashed::Pair(h1, h2)
            }
            TokenHasher::Blake(key) => {
                let rounds = k.div_ceil(32).max(1);
                let mut words = Vec::with_capacity(rounds * 32);
                for r in 0..rounds {
                    let salt = r.to_string();
                    let mut h = Blake2bMac512::new_with_salt_and_personal(
                        Some(key.as_slice()),
                        salt.as_bytes(),
                        b"",
                    )
                    .expect("key and salt lengths checked");
                    Mac::update(&mut h, token);
                    let d = h.finalize().into_bytes();
                    words.extend(d.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])));
                }
                Hashed::Words(words)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_separate_keys_and_key_check_is_stable() {
        let s = Secret::from_bytes(b"k".to_vec()).unwrap();
        assert_ne!(*derive_key(&s, "a"), *derive_key(&s, "b"));
        assert_eq!(key_check(&s), key_check(&s));
        assert_eq!(key_check(&s).len(), 16);
        let t = Secret::from_bytes(b"l".to_vec()).unwrap();
        assert_ne!(key_check(&s), key_check(&t));
    }

    #[test]
    fn native_positions_are_distinct_in_power_of_two_filters() {
        let s = Secret::from_bytes(b"k".to_vec()).unwrap();
        let h = TokenHasher::native(derive_key(&s, "x").as_ref());
        let hashed = h.hash(b"ab", 1024, 30);
        let mut idx: Vec<usize> = (0..30).map(|j| hashed.index(j, 1024)).collect();
        idx.sort();
        idx.dedup();
        assert_eq!(idx.len(), 30);
    }

    #[test]
    fn be_mod_matches_bigint() {
        assert_eq!(be_mod(&[0x01, 0x00], 7), 256 % 7);
        assert_eq!(be_mod(&[0xff; 20], 1024), 1023);
    }
}
