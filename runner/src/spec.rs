//! What a run is asked to do ([`RunSpec`]) and the checks that refuse a bad one before
//! anything starts ([`RunSpec::validate`]).

use std::time::Duration;

/// The languages a run can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Debian's `python3`, with numpy, pandas, matplotlib, requests, pillow and
    /// beautifulsoup.
    Python,
    /// TypeScript (and JavaScript) run directly by Bun.
    Typescript,
    /// GNU bash with coreutils, grep, sed, awk, jq, python3 and bun on `PATH`.
    Bash,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Python, Runtime::Typescript, Runtime::Bash];

    /// The runtime called `name` in a request.
    pub fn parse(name: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Typescript => "typescript",
            Runtime::Bash => "bash",
        }
    }

    /// The runtime a file's extension suggests (`py`, `ts`/`js`/..., `sh`/`bash`).
    pub fn from_extension(extension: &str) -> Option<Runtime> {
        match extension {
            "py" => Some(Runtime::Python),
            "ts" | "tsx" | "js" | "mjs" | "cjs" | "mts" => Some(Runtime::Typescript),
            "sh" | "bash" => Some(Runtime::Bash),
            _ => None,
        }
    }

    /// Where the code is placed inside the sandbox.
    pub fn code_path(self) -> &'static str {
        match self {
            Runtime::Python => "/run/agentbox/main.py",
            Runtime::Typescript => "/run/agentbox/main.ts",
            Runtime::Bash => "/run/agentbox/main.sh",
        }
    }
}

/// The longest timeout a run may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// The timeout of a run that names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most variables a request's `env` may set.
pub const MAX_ENV_VARS: usize = 256;
/// The most bytes of names and values a request's `env` may hold.
pub const MAX_ENV_BYTES: usize = 128 * 1024;
/// The longest `cwd`.
pub const MAX_CWD_BYTES: usize = 4096;

/// One run, as requested.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub runtime: Runtime,
    /// The program's text.
    pub code: String,
    /// Fed to the program's standard input, which is then closed.
    pub stdin: Vec<u8>,
    /// Added to (or replacing) the sandbox's documented environment.
    pub env: Vec<(String, String)>,
    /// The working directory inside the sandbox, absolute.
    pub cwd: String,
    pub timeout: Duration,
    /// Whether the run may reach the network (only if the runner allows it too).
    pub network: bool,
}

impl RunSpec {
    /// A run of `code` with everything else as default.
    pub fn new(runtime: Runtime, code: impl Into<String>) -> RunSpec {
        RunSpec {
            runtime,
            code: code.into(),
            stdin: Vec::new(),
            env: Vec::new(),
            cwd: "/".to_string(),
            timeout: DEFAULT_TIMEOUT,
            network: false,
        }
    }

    /// Refuses a spec the runner cannot or must not run, saying why.
    pub fn validate(&self, network_allowed: bool) -> Result<(), InvalidRun> {
        if self.timeout.is_zero() {
            return Err(InvalidRun::new("timeout must be at least 1 second"));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(InvalidRun::new(format!(
                "timeout must be at most {} seconds",
                MAX_TIMEOUT.as_secs()
            )));
        }
        if self.network && !network_allowed {
            return Err(InvalidRun {
                kind: InvalidKind::NetworkNotAllowed,
                message: "this server does not allow network access in runs".into(),
            });
        }
        if self.code.contains('\0') {
            return Err(InvalidRun::new("code must not contain NUL bytes"));
        }
        validate_cwd(&self.cwd)?;
        validate_env(&self.env)
    }
}

/// Why a run was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRun {
    pub kind: InvalidKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// A field is malformed or out of range.
    Invalid,
    /// The run asked for the network on a server that does not allow it.
    NetworkNotAllowed,
}

impl InvalidRun {
    fn new(message: impl Into<String>) -> InvalidRun {
        InvalidRun {
            kind: InvalidKind::Invalid,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for InvalidRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidRun {}

fn validate_cwd(cwd: &str) -> Result<(), InvalidRun> {
    if !cwd.starts_with('/') {
        return Err(InvalidRun::new("cwd must be an absolute path"));
    }
    if cwd.len() > MAX_CWD_BYTES || cwd.contains('\0') {
        return Err(InvalidRun::new("cwd is too long or contains NUL"));
    }
    if cwd.split('/').any(|part| part == ".." || part == ".") {
        return Err(InvalidRun::new("cwd must not contain . or .. segments"));
    }
    Ok(())
}

fn validate_env(env: &[(String, String)]) -> Result<(), InvalidRun> {
    if env.len() > MAX_ENV_VARS {
        return Err(InvalidRun::new(format!(
            "env may set at most {MAX_ENV_VARS} variables"
        )));
    }
    let mut total = 0;
    for (name, value) in env {
        let valid_name = name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(InvalidRun::new(format!(
                "env name {name:?} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        if value.contains('\0') {
            return Err(InvalidRun::new(format!(
                "env value of {name} contains a NUL byte"
            )));
        }
        total += name.len() + value.len() + 2;
    }
    if total > MAX_ENV_BYTES {
        return Err(InvalidRun::new(format!(
            "env holds {total} bytes; the limit is {MAX_ENV_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec::new(Runtime::Bash, "echo hi")
    }

    #[test]
    fn runtimes_round_trip_their_names() {
        for runtime in Runtime::ALL {
            assert_eq!(Runtime::parse(runtime.name()), Some(runtime));
        }
        assert_eq!(Runtime::parse("ruby"), None);
        assert_eq!(Runtime::from_extension("py"), Some(Runtime::Python));
        assert_eq!(Runtime::from_extension("ts"), Some(Runtime::Typescript));
        assert_eq!(Runtime::from_extension("sh"), Some(Runtime::Bash));
        assert_eq!(Runtime::from_extension("rb"), None);
    }

    #[test]
    fn timeouts_are_bounded() {
        let mut s = spec();
        s.timeout = Duration::from_secs(300);
        assert!(s.validate(false).is_ok());
        s.timeout = Duration::from_secs(301);
        assert!(s.validate(false).unwrap_err().message.contains("300"));
        s.timeout = Duration::ZERO;
        assert!(s.validate(false).is_err());
    }

    #[test]
    fn network_needs_the_server_s_permission() {
        let mut s = spec();
        s.network = true;
        assert_eq!(
            s.validate(false).unwrap_err().kind,
            InvalidKind::NetworkNotAllowed
        );
        assert!(s.validate(true).is_ok());
    }

    #[test]
    fn cwd_must_be_a_clean_absolute_path() {
        for bad in ["relative", "/a/../b", "/a/./b", "/a\0b"] {
            let mut s = spec();
            s.cwd = bad.into();
            assert!(s.validate(false).is_err(), "{bad:?}");
        }
        let mut s = spec();
        s.cwd = "/work/dir".into();
        assert!(s.validate(false).is_ok());
    }

    #[test]
    fn env_names_values_and_sizes_are_checked() {
        for (name, value) in [
            ("", "x"),
            ("1A", "x"),
            ("A=B", "x"),
            ("A B", "x"),
            ("A", "a\0b"),
        ] {
            let mut s = spec();
            s.env = vec![(name.into(), value.into())];
            assert!(s.validate(false).is_err(), "{name:?}={value:?}");
        }
        let mut s = spec();
        s.env = vec![("GOOD_1".into(), "x".into()), ("_x".into(), String::new())];
        assert!(s.validate(false).is_ok());
        s.env = vec![("BIG".into(), "x".repeat(MAX_ENV_BYTES))];
        assert!(s.validate(false).is_err());
        s.env = (0..=MAX_ENV_VARS)
            .map(|i| (format!("V{i}"), "1".into()))
            .collect();
        assert!(s.validate(false).is_err());
    }
}
