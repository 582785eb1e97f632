//! The open-file limit (`RLIMIT_NOFILE`): one descriptor per connection, on both sides.
//!
//! [`raise_nofile`] runs at the start of the generator, before it launches any server, so the servers inherit the
//! raised limit: the soft limit goes up to the hard one, and the hard one up to `/proc/sys/fs/nr_open` where the
//! process may raise it (`CAP_SYS_RESOURCE`). [`nofile_of`] reads what a launched server got.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft and hard `RLIMIT_NOFILE` of this process after raising them as far as allowed.
pub fn raise_nofile() -> (u64, u64) {
    let current = getrlimit(Resource::Nofile);
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let hard = current.maximum.unwrap_or(u64::MAX);
    // First try to raise the hard limit too (needs CAP_SYS_RESOURCE), then settle for the hard limit we have.
    if hard < ceiling {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(ceiling), maximum: Some(ceiling) });
    }
    let now = getrlimit(Resource::Nofile);
    if now.current < now.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: now.maximum, maximum: now.maximum });
    }
    nofile()
}

/// This process's soft and hard `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
pub fn nofile() -> (u64, u64) {
    let l = getrlimit(Resource::Nofile);
    (l.current.unwrap_or(u64::MAX), l.maximum.unwrap_or(u64::MAX))
}

/// The soft `RLIMIT_NOFILE` of process `pid`, from `/proc/PID/limits` (`u64::MAX` for unlimited).
pub fn nofile_of(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_nofile(&limits)
}

fn parse_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            20000                20000                files     \n";
        assert_eq!(parse_nofile(text), Some(20000));
        assert_eq!(parse_nofile("Max open files unlimited unlimited files"), Some(u64::MAX));
        assert_eq!(parse_nofile(""), None);
    }

    #[test]
    fn raising_never_lowers() {
        let (soft, hard) = nofile();
        let (soft2, hard2) = raise_nofile();
        assert!(soft2 >= soft && hard2 >= hard && soft2 <= hard2);
        assert_eq!(nofile_of(std::process::id()), Some(soft2));
    }
}
