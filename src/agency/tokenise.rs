//! Tokenisation: a normalised value into the tokens that are hashed.
//!
//! Tokens are written into a reusable [`TokenBuf`] (one byte arena plus end
//! offsets), so tokenising a record allocates nothing once the buffers are
//! warm. q-grams work on Unicode code points, padded with `q-1` spaces each
//! side, exactly as clkhash does. Agency side only.

use super::schema::Tokens;

/// A reusable list of tokens.
#[derive(Default, Debug)]
pub struct TokenBuf {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    padded: String,
    bounds: Vec<usize>,
}

impl TokenBuf {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Token `i` as bytes.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Iterate over the tokens.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.get(i))
    }

    fn push(&mut self, parts: &[&[u8]]) {
        for p in parts {
            self.bytes.extend_from_slice(p);
        }
        self.ends.push(self.bytes.len());
    }

    /// Replace the contents with the tokens of `value`.
    pub fn tokenise(&mut self, how: &Tokens, value: &str) {
        self.bytes.clear();
        self.ends.clear();
        if value.is_empty() {
            return;
        }
        match how {
            Tokens::Whole => self.push(&[value.as_bytes()]),
            Tokens::Qgram { q, positional } => self.qgrams(*q as usize, *positional, value),
            Tokens::DateParts => {
                // value is canonical YYYYMMDD
                let b = value.as_bytes();
                for (i, d) in b.iter().enumerate() {
                    let pos = [b'1' + i as u8, b' ', *d];
                    self.push(&[&pos]);
                }
                if b.len() == 8 {
                    self.push(&[b"y:", &b[0..4]]);
                    self.push(&[b"m:", &b[4..6]]);
                    self.push(&[b"d:", &b[6..8]]);
                }
            }
        }
    }

    fn qgrams(&mut self, q: usize, positional: bool, value: &str) {
        let mut padded = std::mem::take(&mut self.padded);
        let mut bounds = std::mem::take(&mut self.bounds);
        padded.clear();
        bounds.clear();
        for _ in 1..q {
            padded.push(' ');
        }
        padded.push_str(value);
        for _ in 1..q {
            padded.push(' ');
        }
        bounds.extend(padded.char_indices().map(|(i, _)| i));
        bounds.push(padded.len());
        let nchars = bounds.len() - 1;
        if nchars >= q {
            let mut num = itoa_buf();
            for i in 0..=nchars - q {
                let gram = &padded.as_bytes()[bounds[i]..bounds[i + q]];
                if positional {
                    let n = write_usize(&mut num, i + 1);
                    self.push(&[n, b" ", gram]);
                } else {
                    self.push(&[gram]);
                }
            }
        }
        self.padded = padded;
        self.bounds = bounds;
    }
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn write_usize(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(how: Tokens, v: &str) -> Vec<String> {
        let mut t = TokenBuf::default();
        t.tokenise(&how, v);
        t.iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn bigrams_are_padded_like_clkhash() {
        let q2 = Tokens::Qgram {
            q: 2,
            positional: false,
        };
        assert_eq!(toks(q2.clone(), "aaaa"), [" a", "aa", "aa", "aa", "a "]);
        assert_eq!(toks(q2.clone(), "a"), [" a", "a "]);
        assert!(toks(q2, "").is_empty());
    }

    #[test]
    fn positional_unigrams_like_clkhash() {
        let q1 = Tokens::Qgram {
            q: 1,
            positional: true,
        };
        assert_eq!(toks(q1, "2600"), ["1 2", "2 6", "3 0", "4 0"]);
    }

    #[test]
    fn unicode_code_points() {
        let q2 = Tokens::Qgram {
            q: 2,
            positional: false,
        };
        assert_eq!(toks(q2, "zoë"), [" z", "zo", "oë", "ë "]);
    }

    #[test]
    fn date_parts() {
        let t = toks(Tokens::DateParts, "19850314");
        assert_eq!(t.len(), 11);
        assert_eq!(t[0], "1 1");
        assert_eq!(&t[8..], ["y:1985", "m:03", "d:14"]);
    }

    #[test]
    fn positions_past_nine() {
        let q1 = Tokens::Qgram {
            q: 1,
            positional: true,
        };
        let t = toks(q1, "12345678901");
        assert_eq!(t[10], "11 1");
    }
}
