//! The data directory: one switchboard process owns it at a time.
//!
//! `serve` takes its lock before anything else (before it starts a local
//! nats-server or writes a file there), so a second `serve` on the same
//! directory stops at once and says which process holds it, and never
//! touches the first one's files. The lock is an OS file lock on
//! `switchboard.lock`, released by the kernel when its holder exits, even
//! by SIGKILL; the file holds the holder's pid, for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "switchboard.lock";

/// Why the data directory cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("another switchboard is using {} (pid {pid})", dir.display())]
    Busy { dir: PathBuf, pid: String },
    #[error("cannot use the data directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The data directory, held: dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    dir: PathBuf,
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock, or says who holds it.
    pub fn take(dir: &Path) -> Result<DataDirLock, DataDirError> {
        let io = |source| DataDirError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = match pid.trim() {
                    "" => "unknown".to_string(),
                    pid => pid.to_string(),
                };
                return Err(DataDirError::Busy {
                    dir: dir.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DataDirLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_message_names_it() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        let held = DataDirLock::take(&dir).unwrap();
        let err = DataDirLock::take(&dir).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "another switchboard is using {} (pid {})",
                dir.display(),
                std::process::id()
            )
        );
        drop(held);
        assert!(DataDirLock::take(&dir).is_ok(), "released on drop");
    }
}
