//! Everything a command prints on stdout goes through here, so a closed or full stdout is an
//! answer, never a panic: a reader that went away (`| head -0`, EPIPE) ends the command
//! quietly with exit 0, as other Unix tools do; any other write error (`> /dev/full`) is a
//! one-line error and exit 1.

use std::io::Write;

/// Why stdout could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed the pipe: nobody wants the rest.
    #[error("stdout was closed by its reader")]
    Closed,
    #[error("cannot write to stdout: {0}")]
    Write(std::io::Error),
}

impl OutputError {
    fn from_io(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Self::Closed
        } else {
            Self::Write(e)
        }
    }
}

/// Writes `text` to stdout and flushes it (so a full disk is found here, not at exit).
pub fn print(text: &str) -> Result<(), OutputError> {
    write_to(&mut std::io::stdout().lock(), text)
}

/// Writes `text` and a newline to stdout, flushed.
pub fn print_line(text: &str) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    write_to(&mut out, text)?;
    write_to(&mut out, "\n")
}

fn write_to(out: &mut impl Write, text: &str) -> Result<(), OutputError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(OutputError::from_io)
}

/// Whether a command's error is only "the reader closed stdout": then it ends quietly, exit 0.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<OutputError>()
            .is_some_and(|o| matches!(o, OutputError::Closed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(std::io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_quiet_and_other_errors_are_errors() {
        let closed = write_to(&mut Failing(std::io::ErrorKind::BrokenPipe), "x").unwrap_err();
        assert!(matches!(closed, OutputError::Closed));
        assert!(is_closed_stdout(
            &anyhow::Error::new(closed).context("status")
        ));
        let full = write_to(&mut Failing(std::io::ErrorKind::StorageFull), "x").unwrap_err();
        assert!(
            full.to_string().starts_with("cannot write to stdout: "),
            "{full}"
        );
        assert!(!is_closed_stdout(&anyhow::Error::new(full)));
    }
}
