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
    pub fn parquet_read(path: impl AsRef<Path>, e: impl std::fmt::Display) -> Self {
        Error::input(
            path,
            format!(
                "not a readable Parquet file ({e}); check the path and that the file is complete"
            ),
        )
    }

    /// A Parquet/Arrow error while writing `path`.
    pub fn parquet_write(path: impl AsRef<Path>, e: impl std::fmt::Display) -> Self {
        Error::Write {
            path: path.as_ref().to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }
    }
}
