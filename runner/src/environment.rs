//! What a run's code finds around it besides its files: the environment variables it
//! starts with (a documented allow-list, then the request's own) and the generated
//! `/etc/passwd`, `/etc/group` and `/etc/hosts` naming its user and host.

use crate::bwrap::{HOSTNAME, SANDBOX_BIN};

/// The name of the sandbox's user in `/etc/passwd`.
pub const USER_NAME: &str = "agent";

/// The environment every run starts with, before the request's `env` (which may replace
/// any of it).
pub fn base_environment() -> Vec<(String, String)> {
    [
        (
            "PATH",
            format!("{SANDBOX_BIN}:/usr/local/bin:/usr/bin:/bin"),
        ),
        ("HOME", "/tmp".to_string()),
        ("TMPDIR", "/tmp".to_string()),
        ("USER", USER_NAME.to_string()),
        ("LOGNAME", USER_NAME.to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("HOSTNAME", HOSTNAME.to_string()),
        // Output reaches the client as it is written, not when a buffer fills.
        ("PYTHONUNBUFFERED", "1".to_string()),
        // matplotlib draws to files: there is no display.
        ("MPLBACKEND", "Agg".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// The base environment with the request's variables applied in order (a later one
/// replaces an earlier one of the same name).
pub fn environment(request: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = base_environment();
    for (name, value) in request {
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((name.clone(), value.clone())),
        }
    }
    env
}

pub fn passwd(uid: u32, gid: u32) -> String {
    format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n\
         {USER_NAME}:x:{uid}:{gid}:agentbox sandbox:/tmp:/bin/bash\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
}

pub fn group(gid: u32) -> String {
    format!("root:x:0:\n{USER_NAME}:x:{gid}:\nnogroup:x:65534:\n")
}

pub fn hosts() -> String {
    format!("127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_variables_add_to_and_replace_the_base() {
        let env = environment(&[
            ("HOME".into(), "/work".into()),
            ("MY_VAR".into(), "1".into()),
        ]);
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/work"));
        assert_eq!(get("MY_VAR"), Some("1"));
        assert!(get("PATH").unwrap().starts_with(SANDBOX_BIN));
        assert_eq!(env.iter().filter(|(n, _)| n == "HOME").count(), 1);
    }

    #[test]
    fn passwd_names_the_sandbox_user() {
        assert!(passwd(61000, 61001).contains("agent:x:61000:61001:"));
        assert!(group(61001).contains("agent:x:61001:"));
    }
}
