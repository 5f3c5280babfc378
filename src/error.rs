//! Typed errors for the whole library.
//!
//! Every error names the file, row, column or key it is about, and tells the
//! user what to do. Errors must never carry a plaintext identifier value: they
//! name *where* a problem is, never *what* the value was. The binary reports an
//! error once and maps it to an exit code with [`Error::exit_code`].

use std::path::{Path, PathBuf};

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in bloomlink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line was wrong (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// An input file is malformed or does not fit the schema (exit code 2).
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },

    /// A schema or job config is invalid (exit code 2).
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// An input file could not be opened or read (exit code 2).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An output could not be written (exit code 1).
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Extracts that cannot be linked together (exit code 2).
    #[error("incompatible extracts: {0}")]
    Incompatible(String),

    /// The secret is missing, empty or unreadable (exit code 2).
    #[error("secret: {0}")]
    Secret(String),

    /// A failure while running (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// The process exit code for this error: 2 for usage and input problems,
    /// 1 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Write { .. } | Error::Runtime(_) => 1,
            _ => 2,
        }
    }

    /// An input error about `path`.
    pub fn input(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// A config error about `path`.
    pub fn config(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Config {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// A read error about `path`.
    pub fn read(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Read {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A write error about `path`.
    pub fn write(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Write {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A Parquet error while reading `path`. Parquet errors describe structure,
    /// never cell values, so they are safe to show.
    ///
    /// The message says what the file looks like instead when its first
    /// and last bytes tell (never showing them): text, such as a CSV not
    /// yet encoded, or a Parquet file cut short.
    pub fn parquet_read(path: impl AsRef<Path>, e: impl std::fmt::Display) -> Self {
        let path = path.as_ref();
        let hint = match parquet_shape(path) {
            Some(Shape::Text) => {
                "it is a text file (a CSV?), not Parquet: `encode` reads a CSV named .csv, and `link` reads the extracts `encode` writes"
            }
            Some(Shape::Cut) => {
                "it starts as a Parquet file but its end is missing: it was probably cut short while being copied or written; copy it again"
            }
            _ => "check the path and that the file is complete",
        };
        Error::input(path, format!("not a readable Parquet file ({e}); {hint}"))
    }

    /// A Parquet/Arrow error while writing `path`.
    pub fn parquet_write(path: impl AsRef<Path>, e: impl std::fmt::Display) -> Self {
        Error::Write {
            path: path.as_ref().to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

/// What a file that Parquet could not read looks like.
enum Shape {
    /// Printable text in its first bytes.
    Text,
    /// Parquet's magic at the start but not at the end.
    Cut,
    Other,
}

/// [`Shape`] of `path` from its first 512 and last 4 bytes (`None` when it
/// cannot be read). Only the shape is kept: no byte is ever shown.
fn parquet_shape(path: &Path) -> Option<Shape> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 512];
    let n = f.read(&mut head).ok()?;
    let head = &head[..n];
    if head.starts_with(b"PAR1") {
        let mut tail = [0u8; 4];
        f.seek(SeekFrom::End(-4)).ok()?;
        f.read_exact(&mut tail).ok()?;
        return Some(if &tail == b"PAR1" {
            Shape::Other
        } else {
            Shape::Cut
        });
    }
    // Bytes, not characters: a CSV in any 8-bit encoding (or UTF-8 cut
    // mid-character at byte 512) has no control bytes but line ends and
    // tabs.
    let text = !head.is_empty()
        && head
            .iter()
            .all(|&b| b >= 0x20 && b != 0x7f || matches!(b, b'\n' | b'\r' | b'\t'));
    Some(if text { Shape::Text } else { Shape::Other })
}
