//! The local terminal: whether stdin/stdout are terminals, their size, and raw mode that is always
//! restored.

use std::io::IsTerminal as _;
use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{CliError, Result};

/// Whether both stdin and stdout are terminals: then exec and console run with a PTY in raw mode.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// The size of the terminal on stdout (or stdin), as (rows, cols).
pub fn size() -> Option<(u16, u16)> {
    terminal_size::terminal_size_of(std::io::stdout())
        .or_else(|| terminal_size::terminal_size_of(std::io::stdin()))
        .map(|(terminal_size::Width(w), terminal_size::Height(h))| (h, w))
}

/// Raw mode on a terminal for as long as the guard lives. Dropping it restores the saved settings,
/// also when the command fails or panics, so the user's shell is never left without echo.
pub struct RawMode<F: AsFd = std::io::Stdin> {
    fd: F,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on this process's stdin.
    pub fn stdin() -> Result<RawMode> {
        RawMode::enable(std::io::stdin())
    }
}

impl<F: AsFd> RawMode<F> {
    pub fn enable(fd: F) -> Result<RawMode<F>> {
        let saved = termios::tcgetattr(fd.as_fd())
            .map_err(|e| CliError::io("cannot read the terminal settings", std::io::Error::from(e)))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(|e| CliError::io("cannot switch the terminal to raw mode", std::io::Error::from(e)))?;
        Ok(RawMode { fd, saved })
    }
}

impl<F: AsFd> Drop for RawMode<F> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(fd: &impl AsFd) -> bool {
        termios::tcgetattr(fd.as_fd()).unwrap().local_flags.contains(termios::LocalFlags::ECHO)
    }

    /// Raw mode is switched on and restored by the guard, on a real pseudo-terminal pair.
    #[test]
    fn raw_mode_is_restored_on_drop() {
        let pty = nix::pty::openpty(None, None).unwrap();
        assert!(echo(&pty.slave));
        let guard = RawMode::enable(pty.slave.as_fd()).unwrap();
        assert!(!echo(&pty.slave));
        drop(guard);
        assert!(echo(&pty.slave));
    }

    #[test]
    fn raw_mode_on_a_non_terminal_is_an_error() {
        let file = tempfile::tempfile().unwrap();
        assert!(RawMode::enable(&file).is_err());
    }
}
