//! The CLI's error type and how errors are rendered at the edge.
//!
//! Every failure is a [`forkr_engine::Error`] (kind, stable code, message) so that server answers and
//! local checks look the same; the CLI adds an optional `help` line that says how to fix it. The
//! documented error texts (`Error: --base cannot be used with --fork`, …) are the message verbatim,
//! printed after `Error: `.

use std::fmt;

use forkr_engine::{Error, ErrorKind};

/// A failed command: the engine error plus an optional hint for the user.
#[derive(Debug)]
pub struct CliError {
    pub error: Error,
    pub help: Option<String>,
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An invalid combination of flags or arguments, detected before talking to the server.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::bad_request("usage", message).into()
    }

    /// A problem with the local setup (config file, environment variables).
    pub fn config(message: impl Into<String>) -> Self {
        Error::bad_request("config", message).into()
    }

    /// A local I/O failure with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::io(context, source).into()
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    pub fn code(&self) -> &str {
        self.error.code()
    }

    pub fn message(&self) -> &str {
        self.error.message()
    }
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        CliError { error, help: None }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.error.message())
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl miette::Diagnostic for CliError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.error.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
}

/// Renders reports as `Error: <message>` plus an indented `help:` line, which keeps the documented
/// error texts byte-for-byte. Diagnostics that point into a source file (labels, as the declarative
/// `.forkr/*.yaml` layer produces) get miette's graphical rendering instead, with the snippet.
pub struct Handler;

impl miette::ReportHandler for Handler {
    fn debug(&self, diagnostic: &dyn miette::Diagnostic, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has_labels = diagnostic.labels().is_some_and(|mut l| l.next().is_some());
        if has_labels && diagnostic.source_code().is_some() {
            let mut out = String::new();
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .render_report(&mut out, diagnostic)?;
            return write!(f, "Error: {}", out.trim_start());
        }
        write!(f, "Error: {diagnostic}")?;
        if let Some(help) = diagnostic.help() {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Installs [`Handler`] as miette's report hook (once per process).
pub fn install_handler() {
    // A second install only happens in tests; the first handler stays, which is the same one.
    let _ = miette::set_hook(Box::new(|_| Box::new(Handler)));
}

/// The text printed on stderr for a failed command, without a trailing newline.
pub fn render(error: CliError) -> String {
    install_handler();
    format!("{:?}", miette::Report::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_text_is_verbatim() {
        let text = render(CliError::usage("--base cannot be used with --fork"));
        assert_eq!(text, "Error: --base cannot be used with --fork");
    }

    #[test]
    fn help_goes_on_its_own_line() {
        let text = render(CliError::config("no url").with_help("set FORKR_URL"));
        assert_eq!(text, "Error: no url\n  help: set FORKR_URL");
    }

    #[test]
    fn code_and_kind_come_from_the_engine_error() {
        let e: CliError = Error::conflict("fork_running", "box is running").into();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.code(), "fork_running");
        assert_eq!(e.to_string(), "box is running");
    }
}
