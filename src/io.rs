//! Atomic output files.
//!
//! Every output is written to a temporary file in the destination folder and
//! renamed into place only when complete, so a crash never leaves a half
//! written file under the real name. A group of outputs is committed together
//! at the end of a command. Temporary names carry the writer's process id
//! (`.bloomlink-PID-XXXXXX.tmp`); on Linux a later run removes those of
//! processes that no longer exist (a crash or SIGKILL leaves them behind).
//! This module never interprets what it writes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Remove `.bloomlink-PID-*.tmp` files in `dir` whose process is gone
/// (Linux: no `/proc/PID`). Files of a live process, of this process and
/// names not in that form are left alone; failures are ignored.
fn remove_stale_temporaries(dir: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name
            .strip_prefix(".bloomlink-")
            .filter(|_| name.ends_with(".tmp"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me
            && !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_file(e.path()).is_ok()
        {
            tracing::info!(
                "removed {name}, left in {} by an interrupted run",
                dir.display()
            );
        }
    }
}

/// An output folder a command is about to fill: created now, so that a
/// folder that cannot be made fails before any work, and removed again
/// (with any parent folders made for it) if the command fails before
/// [`OutputDir::keep`], as long as they are still empty: a failed run
/// leaves nothing behind.
pub struct OutputDir {
    /// The folders this made, deepest first.
    created: Vec<PathBuf>,
}

impl OutputDir {
    /// Create `path` and any missing parents.
    pub fn prepare(path: &Path) -> Result<OutputDir> {
        let mut created = Vec::new();
        let mut p = Some(path);
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            created.push(d.to_path_buf());
            p = d.parent();
        }
        std::fs::create_dir_all(path).map_err(|e| Error::write(path, e))?;
        Ok(OutputDir { created })
    }

    /// [`OutputDir::prepare`] for the folder a file is written into.
    pub fn prepare_for(file: &Path) -> Result<OutputDir> {
        match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => OutputDir::prepare(d),
            _ => Ok(OutputDir {
                created: Vec::new(),
            }),
        }
    }

    /// The command succeeded: leave the folders.
    pub fn keep(mut self) {
        self.created.clear();
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        // `remove_dir` refuses a folder that is not empty, and so stops
        // at the first that holds anything.
        for d in &self.created {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
        }
    }
}

/// A file being written; becomes visible under `path` on [`Pending::commit`].
pub struct Pending {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl Pending {
    /// Start writing `path`. Creates the parent folder if needed.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::write(&dir, e))?;
        remove_stale_temporaries(&dir);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".bloomlink-{}-", std::process::id()))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::write(path, e))?;
        Ok(Pending {
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// Start writing `path` with all of `bytes`, to be committed later
    /// (with other outputs, say). Written straight to the file, with no
    /// buffer between: the bytes may be a key, and no copy of them is
    /// left in freed memory.
    pub fn with_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let p = Pending::create(path)?;
        p.file()?
            .write_all(bytes)
            .map_err(|e| Error::write(path, e))?;
        Ok(p)
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file is until it is committed: a finished file may be
    /// read back here first.
    pub fn written(&self) -> &Path {
        self.tmp.path()
    }

    /// A handle to write into (a clone of the temporary file's handle).
    pub fn file(&self) -> Result<File> {
        self.tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::write(&self.path, e))
    }

    /// Ask the OS to start writing what has been written so far to disk,
    /// without waiting, so that [`Pending::commit`]'s flush has little left
    /// to do (a 0.4 GB extract's flush otherwise took 0.15 s at the end of
    /// the run). A hint: nothing depends on it, and elsewhere than Linux
    /// it does nothing.
    pub fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: the descriptor is open for as long as `self.tmp`;
            // SYNC_FILE_RANGE_WRITE only starts writeback of dirty pages.
            unsafe {
                libc::sync_file_range(
                    self.tmp.as_file().as_raw_fd(),
                    0,
                    0,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
    }

    /// Flush to disk and rename into place.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| Error::write(&path, e))?;
        self.tmp
            .persist(&path)
            .map_err(|e| Error::write(&path, e.error))?;
        Ok(())
    }
}

/// The first of `outputs` (what, path) that is one of `inputs`, by path
/// or as the same file under another name (a hard link).
pub fn overwritten<'a>(
    inputs: &[&Path],
    outputs: &[(&'a str, &'a Path)],
) -> Option<(&'a str, &'a Path)> {
    outputs.iter().copied().find(|&(_, o)| {
        inputs
            .iter()
            .any(|&i| i == o || same_file::is_same_file(i, o).unwrap_or(false))
    })
}

/// Refuse to write any of `outputs` over one of `inputs` ([`overwritten`]):
/// a slip in a command line must never replace a command's own input.
pub fn refuse_overwrite(inputs: &[&Path], outputs: &[(&str, &Path)]) -> Result<()> {
    match overwritten(inputs, outputs) {
        Some((what, o)) => Err(Error::Usage(format!(
            "{what} {} is also an input: writing it would overwrite that file; give the output another name",
            o.display()
        ))),
        None => Ok(()),
    }
}

/// Refuse to write a generated folder's `files` (relative to `dir`) over
/// files that some other tool made: when any of them exists, `dir` must
/// hold `marker`, the file a previous run of the same command left there.
/// Synthetic data or a demo written into a folder of real extracts would
/// otherwise replace them (`social_care.csv`, `extracts/school.parquet`).
pub fn check_own_folder(dir: &Path, marker: &str, files: &[&str], command: &str) -> Result<()> {
    if dir.join(marker).exists() {
        return Ok(());
    }
    match files.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        Some(p) => Err(Error::Usage(format!(
            "{} exists and {} was not made by `bloomlink {command}` (it has no {marker}): choose a new or empty folder, so that nothing of yours is overwritten",
            p.display(),
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Pending::with_bytes(path, bytes)?.commit()
}

/// SHA-256 of a file, as lowercase hex (for the audit trail).
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path).map_err(|e| Error::read(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut HashWriter(&mut h)).map_err(|e| Error::read(path, e))?;
    Ok(hex::encode(h.finalize()))
}

struct HashWriter<'a>(&'a mut sha2::Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        {
            let p = Pending::create(&path).unwrap();
            p.file().unwrap().write_all(b"half").unwrap();
        }
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_atomic(&path, b"whole").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn temporaries_of_dead_processes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let names = [
            format!(".bloomlink-{dead}-abc123.tmp"),
            format!(".bloomlink-{}-abc123.tmp", std::process::id()),
            ".bloomlink-1-abc123.tmp".to_string(), // init: alive
            ".bloomlink-abc123.tmp".to_string(),   // no pid: left alone
            format!(".bloomlink-{dead}-abc123.part"),
            "other.tmp".to_string(),
        ];
        for n in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let p = Pending::create(&dir.path().join("out.bin")).unwrap();
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, [false, true, true, true, true, true]);
        drop(p);
    }
}

thread_local! {
    static QUIET_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run a file decoder, turning a panic inside it into an error naming the
/// file. The Parquet crate can panic on some damaged files (found by
/// fuzzing the extract reader); a damaged file must give a clear error, not
/// a crash. With [`install_quiet_panic_hook`], such a panic prints nothing.
pub fn guard_decoder<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    // Guards nest (read_extract reads the metadata through read_meta).
    let outer = QUIET_PANIC.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANIC.with(|q| q.set(outer));
    match r {
        Ok(x) => x,
        Err(_) => Err(crate::Error::input(
            path,
            "the file is damaged: the Parquet decoder failed on it; ask for it again or re-create it",
        )),
    }
}

/// Wrap the current panic hook so that panics caught by [`guard_decoder`]
/// print nothing; every other panic reaches the previous hook.
pub fn install_quiet_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET_PANIC.with(|q| q.get()) {
            prev(info)
        }
    }));
}
