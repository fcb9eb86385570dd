//! The process's own stdout and stderr, and what happens when a reader goes away.
//!
//! A bot is often piped into another program (`pingbot --standalone | head -3`,
//! `pingbot --standalone 2>&1 | grep -m1 ok`). Rust ignores SIGPIPE, so a closed pipe shows up as
//! a `BrokenPipe` write error. Printing macros panic on it and ignored errors make a bot run on
//! forever writing into nothing; instead, a closed stdout or stderr cancels [`closed`], which the
//! runtime treats like SIGTERM: runs drain, values not yet written stay in the spool where there
//! is one, and the process exits 0.

use std::io::{self, Write};
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

/// Cancelled once stdout or stderr has been found closed.
pub fn closed() -> CancellationToken {
    static CLOSED: OnceLock<CancellationToken> = OnceLock::new();
    CLOSED.get_or_init(CancellationToken::new).clone()
}

/// Notes a failed write to stdout or stderr: a closed reader ends the bot.
pub fn note_write_error(error: &io::Error) {
    if error.kind() == io::ErrorKind::BrokenPipe {
        closed().cancel();
    }
}

/// Writes a whole buffer to stdout and flushes it; on a closed stdout, ends the bot.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    let result = stdout.write_all(bytes).and_then(|_| stdout.flush());
    if let Err(e) = &result {
        note_write_error(e);
    }
    result
}

/// Prints one line to stderr without panicking when stderr is gone (unlike `eprintln!`).
pub fn say(line: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// The writer the log goes through: stderr, noticing when it is closed. It reports no error to
/// the logging library, which would print it with `eprintln!` and so panic on a closed stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = io::stderr().write_all(buf) {
            note_write_error(&e);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Err(e) = io::stderr().flush() {
            note_write_error(&e);
        }
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_closes() {
        note_write_error(&io::Error::from(io::ErrorKind::WouldBlock));
        assert!(!closed().is_cancelled());
        note_write_error(&io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(closed().is_cancelled());
    }
}
