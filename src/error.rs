//! The one error type that carries an exit code and a hint. Everything else is a plain `anyhow`
//! error, which `main` reports with exit code 125 (agentbox's own failure).

use std::fmt;

/// agentbox failed before the command started.
pub const EXIT_AGENTBOX: u8 = 125;
/// The command was found but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The command was not found (or is not visible inside the sandbox).
pub const EXIT_NOT_FOUND: u8 = 127;

/// A failure with a known exit code and, where the fix is known, a hint.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl Fail {
    /// agentbox's own error (exit 125) with a hint.
    pub fn hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Fail {
            code: EXIT_AGENTBOX,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn with_code(code: u8, message: impl Into<String>, hint: Option<String>) -> Self {
        Fail {
            code,
            message: message.into(),
            hint,
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// The exit code and hint an error asks for: the first `Fail` in its chain, else 125.
pub fn classify(err: &anyhow::Error) -> (u8, Option<&str>) {
    err.chain()
        .find_map(|e| e.downcast_ref::<Fail>())
        .map_or((EXIT_AGENTBOX, None), |f| (f.code, f.hint.as_deref()))
}

/// The command's status as ours: its code, or 128+N when killed by signal N.
pub fn exit_code(status: std::process::ExitStatus) -> std::process::ExitCode {
    std::process::ExitCode::from(u8::try_from(raw_code(status)).unwrap_or(1))
}

/// The status as a shell shows it: the code, or 128 + the signal.
pub fn raw_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}
