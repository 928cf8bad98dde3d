//! Small files named by the configuration (webhook secrets): regular files only, opened
//! without blocking and read with a bound. A FIFO, a device such as `/dev/zero`, a directory
//! or a huge file is an error at once, never a hang or gigabytes in memory.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Why a small file could not be read. Never holds the file's content.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    #[error("cannot read {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("{path} is not valid UTF-8")]
    NotUtf8 { path: String },
}

/// A file's text and its permission bits.
#[derive(Debug)]
pub struct SmallFile {
    pub text: String,
    /// `st_mode & 0o7777`.
    pub mode: u32,
}

impl SmallFile {
    /// Whether group or others have any access, which a secret should not allow (as ssh
    /// checks its keys).
    pub fn open_to_others(&self) -> bool {
        self.mode & 0o077 != 0
    }
}

/// Reads a regular file of at most `max` bytes. The type is checked before opening (so a
/// FIFO is never opened) and again on the opened descriptor (so a swap in between is caught);
/// the open itself is non-blocking, so nothing here waits on a writer.
pub fn read(path: &Path, max: u64) -> Result<SmallFile, SmallFileError> {
    let shown = || path.display().to_string();
    let io = |cause| SmallFileError::Io {
        path: shown(),
        cause,
    };
    check_regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    check_regular(path, &meta)?;
    let too_large = || SmallFileError::TooLarge { path: shown(), max };
    if meta.len() > max {
        return Err(too_large());
    }
    // The size can grow after the fstat: the read itself is bounded too.
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes).map_err(|_| SmallFileError::NotUtf8 { path: shown() })?;
    Ok(SmallFile {
        text,
        mode: meta.mode() & 0o7777,
    })
}

fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), SmallFileError> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    };
    Err(SmallFileError::NotRegular {
        path: path.display().to_string(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_a_small_regular_file_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "https://example.com\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = read(&path, 64).unwrap();
        assert_eq!(file.text, "https://example.com\n");
        assert!(!file.open_to_others());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read(&path, 64).unwrap().open_to_others());
    }

    #[test]
    fn refuses_what_is_not_a_small_regular_file_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        // mkfifo(1): this crate makes no raw libc calls of its own.
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read(&fifo, 64).unwrap_err().to_string();
        assert!(
            e.ends_with("is a FIFO (named pipe), not a regular file"),
            "{e}"
        );
        let e = read(Path::new("/dev/zero"), 64).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        let e = read(dir.path(), 64).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 65]).unwrap();
        let e = read(&big, 64).unwrap_err().to_string();
        assert!(e.contains("larger than 64 bytes"), "{e}");
        std::fs::write(&big, vec![b'x'; 64]).unwrap();
        assert_eq!(read(&big, 64).unwrap().text.len(), 64);
    }
}
